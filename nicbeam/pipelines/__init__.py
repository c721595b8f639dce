"""Runnable jobs and the ``nicbeam`` command line."""
