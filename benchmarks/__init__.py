"""Hand-run benchmarks, not part of the installed package (a package so that the tests in
tests/benchmarks can import them)."""
