"""Fault injection for tests: make a named point in the write path fail once, in any worker process.

Set ``NICBEAM_FAULTS`` to a comma-separated list of ``point`` or ``point@substring`` entries and
``NICBEAM_FAULT_DIR`` to a writable local folder. The first time a worker reaches a listed point (with a
path containing ``substring``, when given) it creates a marker file there, atomically, and raises
:class:`InjectedFault`; every later arrival finds the marker and carries on. The marker makes "once"
hold across threads, retries and worker processes (the environment is inherited by
``multi_processing`` workers). Points: ``after_object_write``, ``before_object_rename``,
``after_temp_shard``, ``before_encode``, ``perceptual_metric``. Unset (the default), this module costs one dict lookup.
"""

from __future__ import annotations

import hashlib
import os

ENV_POINTS = "NICBEAM_FAULTS"
ENV_DIR = "NICBEAM_FAULT_DIR"


class InjectedFault(RuntimeError):
    """Raised once per configured fault point; a runner should retry the bundle."""


def maybe_fail(point: str, key: str = "") -> None:
    spec = os.environ.get(ENV_POINTS)
    if not spec:
        return
    for entry in spec.split(","):
        name, _, needle = entry.strip().partition("@")
        if name != point or (needle and needle not in key):
            continue
        folder = os.environ.get(ENV_DIR)
        if not folder:
            raise RuntimeError(f"{ENV_POINTS} is set but {ENV_DIR} is not")
        marker = os.path.join(folder, hashlib.sha1(entry.encode()).hexdigest()[:16] + ".fired")
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{point} {key}\n".encode())
        os.close(fd)
        raise InjectedFault(f"injected fault at {point} ({key})")
