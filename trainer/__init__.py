"""The training side: runs and versions (models, services, selectors, forms, views), the Celery tasks,
the worker side (``worker/``), and the P-RLHF library (``core/``, no Django)."""
