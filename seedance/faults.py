"""Fault injection for the reliability checks: a real SIGKILL at a named point of a training run.

    SEEDANCE_KILL_AT=step:3 accelerate launch pipelines/train_probes.py ...   # dies inside step 3
    SEEDANCE_KILL_AT=save:4 accelerate launch pipelines/train_probes.py ...   # dies while saving checkpoint 4

"step:N" fires in the N-th optimisation step after the backward pass and before the weights are updated;
"save:N" fires while checkpoint N is being written: its files are in the temporary folder, the rename that
publishes it has not happened. The process is killed with SIGKILL (no cleanup handlers run, exactly like
`kill -9` or the kernel's OOM killer), so what a resumed run finds is what a real crash leaves behind.
Unset (the normal case) this costs one dictionary lookup per call.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

ENV_VAR = "SEEDANCE_KILL_AT"
POINTS = ("step", "save")


def kill_point(where: str, step: int) -> None:
    """SIGKILL this process if SEEDANCE_KILL_AT names this point ("step:N" or "save:N")."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    name, _, at = spec.partition(":")
    if name not in POINTS or not at.strip().isdigit():
        raise ValueError(f"{ENV_VAR}={spec!r}: use step:N or save:N")
    if name == where and int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def remove_partial_checkpoints(root: Path) -> list[str]:
    """Delete the `.tmp_step_*` folders a crash left in a checkpoint folder; returns their names.

    A checkpoint is written to `.tmp_step_N` and renamed to `step_N` once complete, so a temporary folder is
    always an unfinished save: never resumed from, and removed here when the run starts again."""
    if not root.is_dir():
        return []
    removed = []
    for partial in sorted(root.glob(".tmp_step_*")):
        shutil.rmtree(partial, ignore_errors=True)
        removed.append(partial.name)
    return removed
