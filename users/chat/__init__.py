"""The participant's chat with the active version: plain chat, blind comparisons, quick ratings and
rewrites, the refit of their vectors that new pairs trigger, and the side panel."""
