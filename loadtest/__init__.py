"""Load tests, benchmarks and node-kill experiments (loadtest/DESIGN.md).

harness/: local clusters and attached nodes; checker/: histories and linearizability;
bench/: benchmarks and BENCHMARKS.md; locustfiles/: locust scenarios; chaos/: the experiment.
"""
