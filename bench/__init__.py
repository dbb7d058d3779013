"""Lapin's benchmarks, run by ``make bench`` (``python -m bench``).

Each benchmark is a small module with ``run(ctx) -> Section``; ``__main__``
runs them in order, prints a table per benchmark and rewrites
``BENCHMARKS.md``. Nothing here is imported by the application or the tests.
"""
