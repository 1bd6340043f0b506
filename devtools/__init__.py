"""Development helpers shared by the tests, `make demo` and the benchmarks (not installed)."""
