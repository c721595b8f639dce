"""nicbeam.allocator: with glibc keeping freed memory, a step that allocates and frees the same large
blocks again no longer page-faults them back in (measured in fresh processes: the setting is process-wide), for
``nicbeam train`` and for pipeline workers (``--worker_malloc``)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt only")

CYCLES = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from nicbeam.allocator import keep_freed_memory
    print(keep_freed_memory(), file=sys.stderr)
elif sys.argv[1] != "default":  # a pipeline worker's set-up with --worker_malloc VALUE
    from nicbeam.transforms.codec_runtime import prepare_worker
    prepare_worker(0, sys.argv[1].split("=")[1])
def step():  # three 16 MiB activations, written, then freed, as in a training step
    blocks = [np.ones(4 << 20, dtype=np.float32) for _ in range(3)]
    del blocks
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(malloc: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", CYCLES, malloc], capture_output=True, text=True, check=True)
    return int(done.stdout), done.stderr


def test_kept_memory_is_reused_without_page_faults():
    default, _ = _page_faults("default")
    kept, message = _page_faults("keep")
    assert "glibc malloc keeps freed memory (mmap threshold 32 MiB, trim threshold 1024 MiB)" in message
    # glibc's defaults hand blocks back and fault them in again every step (~1,000 faults per step measured here;
    # the kernel maps several pages per fault); kept, the steps reuse the same memory
    assert default > 10 * 200
    assert kept < default // 20


def test_pipeline_workers_keep_freed_memory_unless_told_not_to():
    default, _ = _page_faults("default")
    assert _page_faults("worker=keep")[0] < default // 20
    assert _page_faults("worker=default")[0] > default // 2


def test_unknown_worker_malloc_setting_is_refused():
    from nicbeam.transforms.codec_runtime import prepare_worker

    with pytest.raises(ValueError, match="worker_malloc must be 'keep' or 'default'"):
        prepare_worker(0, "jemalloc")
