"""Benchmarks: each prints its measurements side by side with the obvious alternative and returns its
figures with their targets. Run them through ``python -m bench`` (``list``, ``NAME``, ``quick``)."""
