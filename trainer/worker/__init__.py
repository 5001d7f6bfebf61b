"""The worker side: what the Celery tasks run. ``training`` trains a run, ``serving`` answers replies
with the active version and a person's vectors, ``refit`` fits one person's vectors from their new pairs.
Imported only by worker processes (it loads torch)."""
