"""Benchmarks that print figures, not verdicts, and the generator of BENCHMARKS.md.

`sweep` is `raftkv bench`; `compare`, `cpu_account`, `raft_only`, `snapshot_bench` and
`join_bench` run as `python -m loadtest.bench.<name>`; `etcd` starts the etcd cluster they
compare against; `report` rewrites BENCHMARKS.md from loadtest/results/.
"""
