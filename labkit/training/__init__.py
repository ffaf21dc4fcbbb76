"""Training: the config (every setting, declared once), the loop, checkpoints, EMA, DDP and progress."""
