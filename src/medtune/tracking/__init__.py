"""Experiment tracking: one W&B run per Hydra job (offline by default), and reading offline runs back."""
