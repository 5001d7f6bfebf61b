"""Who may be trained on, exported for training or evaluated, as field lookups (no other project import, so
any layer may ask)."""

# Who may be trained on, exported for training or evaluated: consent that says yes (this site records
# CONSENT_GIVEN; PRISM's files carry "Yes, ..." for everyone who took part) and no withdrawal since. As
# field lookups from a user, and from a row that has a ``user`` (prefix the path to it).
CONSENTED = {"profile__consent__istartswith": "yes", "profile__withdrawn_at__isnull": True}


def consented(prefix: str = "") -> dict:
    """``CONSENTED`` as lookups through ``prefix`` (e.g. "turn__conversation__user__")."""
    return {prefix + key: value for key, value in CONSENTED.items()}
