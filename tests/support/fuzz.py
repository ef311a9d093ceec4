"""How much fuzzing a run does: CI's small bounded amounts, scaled up by RAFTKV_FUZZ_SCALE.

    RAFTKV_FUZZ_SCALE=20 .venv/bin/pytest tests/unit/test_state_machine_fuzz.py

multiplies every fuzz test's number of examples (hypothesis) and cases per operation
(schemathesis) by 20. CI runs scale 1, a few seconds per test.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("RAFTKV_FUZZ_SCALE", "1")))


def scaled(examples: int) -> int:
    return examples * SCALE


def fuzz_settings(examples: int, **more) -> settings:
    """Hypothesis settings for a fuzz test: `examples` scaled; no deadline (the machine is shared,
    a slow example is not a failure); no example database left in the work tree."""
    return settings(max_examples=scaled(examples), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow], **more)
