"""Forged payloads for decoder robustness tests: truncations and byte flips of a valid payload, seeded."""

from __future__ import annotations

from typing import Iterator

import numpy as np


def mutated_payloads(payload: bytes, trials: int, seed: int) -> Iterator[bytes]:
    """``trials`` damaged copies of ``payload``: every 4th truncated at a random length, the others with 1-3 bytes flipped."""
    rng = np.random.default_rng(seed)
    for trial in range(trials):
        bad = bytearray(payload)
        if trial % 4 == 0:
            bad = bad[: int(rng.integers(0, len(bad)))]
        else:
            for pos in rng.integers(0, len(bad), 1 + trial % 3):
                bad[pos] ^= int(rng.integers(1, 256))
        yield bytes(bad)
