"""sqlq's benchmarks: ``make bench`` (``benchmarks/run.py``); see benchmarks/README.md."""
