"""The history model: recorded operations on one register per key, and what each does to it.

A register holds a value (None = absent). Operations whose outcome is unknown (timeouts,
"outcome unknown") have no return time: they may take effect at any point after their
invocation, or never. Operations that certainly failed must be left out of the history by the
caller. Values written should be unique per key, so that a check-and-set's expected
ModifyIndex can be given as the value it names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

READ, WRITE, CAS = "read", "write", "cas"


@dataclass
class Operation:
    kind: str  # read | write | cas
    key: str
    call: float  # invocation time (monotonic seconds)
    ret: float = math.inf  # completion time; inf when the outcome is unknown
    value: object = None  # read: value observed; write/cas: value written
    expected: object = None  # cas: value the key must hold (None: must be absent)
    ok: bool | None = None  # cas: True succeeded, False refused, None unknown
    client: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def unknown(self) -> bool:
        return self.ret == math.inf

    def __str__(self) -> str:
        ret = "?" if self.unknown else f"{self.ret:.4f}"
        return (f"{self.client} {self.kind} {self.value!r} exp={self.expected!r} ok={self.ok} "
                f"[{self.call:.4f}, {ret}]")


def apply_to_register(value, op: Operation) -> tuple[bool, object]:
    """(whether `op` may take effect on a register holding `value`, the value it leaves)."""
    if op.kind == READ:
        return value == op.value, value
    if op.kind == WRITE:
        return True, op.value
    matches = value == op.expected
    if op.ok is None:  # unknown outcome: a CAS is deterministic given the value
        return True, op.value if matches else value
    if op.ok:
        return matches, op.value
    return not matches, value
