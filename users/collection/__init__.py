"""PRISM-style collection: conversations whose turns get several candidate replies, rated 1-100,
the best continuing; the end-of-conversation questions; the preference pairs the ratings make."""
