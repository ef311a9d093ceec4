"""Recorded histories and the linearizability checker.

`linearizability.check_history(operations)` judges a recorded history key by key;
`Operation` is one recorded call.
"""
