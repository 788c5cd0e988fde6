"""prismq-queue's benchmarks: ``python -m benchmarks`` (see docs/benchmarks.md)."""
