"""Benchmarks (``python -m bench [--quick] [--out FILE]``); see docs/benchmarks.md."""
