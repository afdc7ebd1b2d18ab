"""Builders for tests and benchmarks (tiny random checkpoints); production code never imports this package."""
