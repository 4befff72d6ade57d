"""Benchmark scripts: each measures something, prints its tables and writes JSON to ``benchmarks/results/``.

Run one from the repository root as a module, ``python -m benchmarks.NAME [--quick] ...``; they are never run by
the tests (``tests/test_benchmark_helpers.py`` checks their pure helpers) and are not part of the wheel.
"""
