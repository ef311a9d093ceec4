"""`raftkv chaos`: the node-kill experiment.

`experiment` runs it: a recorded `workload` under a schedule of `faults` (and
`membership_faults`), judged by loadtest.checker, written out by `report`. `network/` makes
partitions (`netlab`, network namespaces) and slow or lossy links (`relay`).
"""
