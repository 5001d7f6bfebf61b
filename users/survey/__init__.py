"""The profile survey every participant fills before their first PRISM conversation."""
