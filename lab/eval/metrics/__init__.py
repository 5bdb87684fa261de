"""Scores of runs, one module per family of metric."""
