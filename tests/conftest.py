"""Fixtures shared by several test modules (pytest provides them by name, no import)."""

from __future__ import annotations

import pytest


@pytest.fixture
def torch_threads():
    """One torch intra-op thread for the test (CI has 2 cores shared with other work); yields the setter for a
    test that asks for more, and restores the previous count afterwards."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch.set_num_threads
    torch.set_num_threads(before)
