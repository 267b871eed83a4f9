"""The benchmark's modules; the entry point is `python bench/run.py` (see bench/README.md)."""
