"""Load tests, benchmarks and node-kill experiments."""
