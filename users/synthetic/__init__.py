"""Synthetic people whose preferences are known: the hidden rule, the populations, template replies,
their pairs, PRISM-shaped files, and (in ``population``) the same people driven through the site's
collection services. Everything but ``population`` is pure Python, usable from the ML core's tests."""
