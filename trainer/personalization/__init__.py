""""Does it personalize?": evaluating a version's generated replies against plain DPO, the generic vectors and
the base model, per group and per person (services, the report), without torch. The generation itself runs on
the train worker (``trainer.worker.personalization``)."""
