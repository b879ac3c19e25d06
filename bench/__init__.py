"""Benchmarks: `python -m bench.NAME [--quick]`; each figure is one JSON line on stdout."""
