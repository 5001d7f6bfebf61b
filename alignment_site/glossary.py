"""One name for one thing: the words the pages, forms and admin use for the project's concepts.

Templates reach these through the filters at the bottom (a template builtin, see settings.TEMPLATES), forms and
the admin import the functions; ``tests/foundation/test_glossary.py`` checks that the pages show these strings
and no others for the same concept.
"""

from __future__ import annotations

from django import template

# Training methods: (loss, personalized) -> name. "P-" marks the personalized variant (P-RLHF's user model).
LOSSES = {"dpo": "DPO", "ipo": "IPO", "simpo": "SimPO", "hinge": "Hinge"}
USER_MODELS = {"individual": "individual user model", "cluster": "cluster user model", "none": "no user model"}
# The models a participant compares, named the same before and after the reveal (the plain-DPO model only in the
# comparisons a personalization evaluation leaves for them).
VECTORS = {"own": "Your vectors", "generic": "Generic vectors", "base": "Base model", "baseline": "Plain DPO"}
HYPERPARAMETER_LABELS = {"lora_r": "LoRA rank", "lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout",
                         "lr_lora": "LoRA learning rate"}


def method(loss: str, personalized: bool) -> str:
    """The name of a training method: P-DPO, P-IPO, ..., or DPO for plain DPO."""
    name = LOSSES.get(loss, loss.upper())
    return f"P-{name}" if personalized else name


def method_of(config: dict) -> str:
    """A run's method from its config: "P-DPO" or "DPO"."""
    return method(config.get("loss", "dpo"), config.get("user_model", "none") != "none")


def method_long(config: dict) -> str:
    """The method with its user model: "P-DPO · individual user model, 10 vectors" or "DPO · no user model"."""
    user_model = config.get("user_model", "none")
    text = f"{method_of(config)} · {USER_MODELS.get(user_model, user_model)}"
    if user_model == "cluster":
        text += f" (K={config.get('n_clusters')})"
    if user_model != "none":
        n = config.get("n_user_tokens")
        text += f", {n} vector{'s' if n != 1 else ''}"
    return text


def reply_label(position: int) -> str:
    """A candidate reply in a turn: numbered from 1 in every turn."""
    return f"Reply {position + 1}"


def version(run) -> str:
    """What a trained run is called once it serves chat: the same words for participants and staff."""
    return f"version {run.pk}"


register = template.Library()
register.filter("method_long", method_long)
register.filter("version", version)


@register.filter
def vectors(kind: str) -> str:
    return VECTORS.get(kind, kind)
