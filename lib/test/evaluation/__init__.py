"""Running trackers over benchmarks and the result files they write."""
