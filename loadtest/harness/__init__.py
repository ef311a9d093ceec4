"""Clusters of real raftkv node processes, for the tests, benchmarks and experiments.

`cluster.Cluster` starts local nodes on 127.0.0.1 (or in network namespaces) and waits on
what they report; `attach.AttachedCluster` drives nodes someone else started, through the
commands a TOML file gives.
"""
