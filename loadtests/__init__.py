"""Load tests (locust) and benchmark scripts; run on demand, see docs/BENCHMARKS.md."""
