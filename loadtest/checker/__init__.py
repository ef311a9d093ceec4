"""Recorded histories and the linearizability checker.

`history`: the model (an `Operation` on one register per key, and what it does to it);
`linearizability`: `check_history` judges a recorded history key by key, `check_key` one key.
"""

from loadtest.checker.history import CAS, READ, WRITE, Operation
from loadtest.checker.linearizability import Verdict, check_history, check_key

__all__ = ["CAS", "READ", "WRITE", "Operation", "Verdict", "check_history", "check_key"]
