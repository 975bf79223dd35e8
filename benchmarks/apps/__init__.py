"""Server applications the benchmarks run under granian."""
