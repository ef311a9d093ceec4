"""The tests use the product's own local-cluster helper."""

from loadtest.harness.cluster import HOST, Cluster, NodeProcess, free_ports  # noqa: F401
