"""The start form's settings read off the data: the pairs the run would train on from the database, the
rules of ``trainer.core.defaults`` (the command line calls the same ones), each choice with its reason.
Torch-free (the web uses it)."""

from __future__ import annotations

from django.conf import settings

from trainer.core.config import TrainConfig
from trainer.core.data import split_settings
from trainer.core.defaults import BUDGET_SECONDS, Chosen, PairFact, choose, token_lengths


def _model_path() -> str | None:
    from trainer.core import provision

    try:
        return provision.resolve(settings.BASE_MODEL, settings.DATA_DIR).path
    except provision.ProvisionError:
        return None


def form_choices(values: dict, data_filter: dict) -> Chosen:
    """The rules on the training pairs of ``data_filter`` for a run starting from ``values`` (a preset's
    settings): the split and step count the worker will make, the time budget of the listening train workers'
    device, the base model's width and tokenizer."""
    from trainer import preflight, selectors, services

    config = TrainConfig.from_dict(values)
    facts = [PairFact(user, conversation, margin, chosen)
             for user, conversation, margin, chosen in selectors.pair_margins(data_filter)]
    shape = preflight.model_shape()
    on_gpu = any(w.device == "cuda" for w in preflight.train_workers())
    passes_per_step = config.batch_size * (2 if config.personalized else 1)  # P-DPO passes a pair twice
    seconds_per_step = services.time_estimate(passes_per_step)["estimated_seconds"] if facts else None
    model_path = _model_path()

    def lengths(ids: list[int]) -> list[int]:
        texts = selectors.reply_texts(ids)
        return token_lengths([texts[i] for i in ids if i in texts], model_path)[0]

    return choose(facts, split=split_settings(data_filter, config.seed), batch_size=config.batch_size,
                  min_pairs=int(data_filter.get("min_pairs", 1)), hidden=shape.hidden if shape else None,
                  seconds_per_step=seconds_per_step, budget_seconds=BUDGET_SECONDS["gpu" if on_gpu else "cpu"],
                  lengths=lengths, personalized=config.personalized)
