"""Evaluations: eval sets, their results and the statistics of a comparison (pure, no I/O)."""
