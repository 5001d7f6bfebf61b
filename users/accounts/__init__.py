"""Sign-up and the participant's home page."""
