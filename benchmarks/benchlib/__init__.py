"""Parts of the benchmark; `benchmarks/run.py` is the one command."""
