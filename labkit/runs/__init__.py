"""Runs on disk: results/<run>/ (store) and one process per run name (lock)."""
