"""The participant-side Django app: accounts, the survey, conversations and replies, PRISM-style collection,
the personalized chat, the staff dataset pages, PRISM files, and synthetic people. One models module
(one migration history); each concern is a package named for it."""
