"""The chat pages (``chat``) and the blind comparison pages (``compare``)."""
