"""Sweeps: named grids of train + evaluate cells, resumable, reported like the paper's tables."""
