"""The staff pages of training: runs and versions (``runs``), the queue and its workers (``queue``), the
health of the services (``status``)."""
