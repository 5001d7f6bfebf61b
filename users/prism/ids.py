"""How people and conversations are named outside this site: in PRISM exports and in training data.

Two namespaces, so a web account called "user5" and PRISM's "user5" stay two people:
imported people keep their PRISM ``user_id``; this site's own accounts are ``web-<username>``.
"""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_PREFIX = "person-"  # a person's id in a version exported for outside use: person-<16 hex digits>
WEB_PREFIX = "web-"  # this site's own accounts export as web-<username>; imported PRISM ids stay as they were
IMPORTED_PREFIX = "prism-"  # usernames of imported people (signup refuses it)


def exported_id(prism_user_id: str | None, username: str) -> str:
    """The person's id in exports and training data: their PRISM id if imported, else web-<username>.

    Two namespaces, so a web account called "user5" and PRISM's "user5" stay two people.
    """
    return prism_user_id or WEB_PREFIX + username


def web_username(exported: str) -> str | None:
    """The username behind a web-<username> id (the inverse of ``exported_id`` for this site's accounts)."""
    return exported[len(WEB_PREFIX):] if exported.startswith(WEB_PREFIX) else None


def pseudonym(exported: str, *, key: str) -> str:
    """The id an exported version gives the person ``exported`` names: ``person-`` and the first 16 hex digits of
    HMAC-SHA256 under ``key`` (the site's secret key). The same person gets the same pseudonym in every export
    of a site; without the key it cannot be traced back, nor tried against a list of usernames.

    One rule for everyone, imported PRISM people too: their PRISM ids are pseudonymous already, but they are
    public, so a row named by one would join PRISM's published survey answers to that person's vectors; and
    the id's form would tell a site account from an imported person. 64 bits: no two people of a site meet
    by chance (the export checks anyway). The message carries a fixed context, so the MAC is of no use for
    anything else keyed by the same secret.
    """
    digest = hmac.new(key.encode(), f"exported-person:{exported}".encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:16]


def exported_user_id(user, profile) -> str:
    """``exported_id`` of a user and their profile (None when they have none)."""
    return exported_id(profile.prism_user_id if profile is not None else None, user.username)


def exported_conversation_id(conversation) -> str:
    return conversation.prism_id or f"web-c{conversation.pk}"


def imported_username(prism_user_id: str) -> str:
    name = IMPORTED_PREFIX + prism_user_id
    return name if len(name) <= 150 else IMPORTED_PREFIX + hashlib.sha1(prism_user_id.encode()).hexdigest()

