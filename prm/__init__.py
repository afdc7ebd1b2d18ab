"""Shared library of the PRM pipeline: records, I/O, steps, grading, models, configs, the CLI."""
