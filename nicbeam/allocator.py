"""Keep freed memory in the process for reuse (glibc ``mallopt``), for CPU training loops and codec workers.

A CPU training step allocates and frees the same multi-megabyte activations and gradients every step. glibc's
defaults hand such blocks back to the kernel (``munmap`` above the mmap threshold, heap trimming above 128 KiB
free at the top), so the next step page-faults and zero-fills them again: measured here, a bf16 + channels-last
``tcm-hyperprior`` step spent about 5 % of its CPU time that way (``benchmarks/bench_train_step.py --malloc-ab``).
Keeping the blocks (serving them from the heap and never trimming it) leaves the peak resident memory where it was,
since the step's peak already holds them all. Codecs in pipeline workers allocate the same way for every image;
kept there (``--worker_malloc keep``), encode + decode run 1.09-1.27x faster (learned codecs), with a peak a few %
higher on a 6 MP image (``benchmarks/bench_worker_malloc.py``; README). No library does this for us: PyTorch's
CPU allocator is ``malloc`` (jemalloc/tcmalloc would need a system package and ``LD_PRELOAD``), so we set glibc's
own two knobs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks below this come from the heap, not a fresh ``mmap``: glibc's maximum (``DEFAULT_MMAP_THRESHOLD_MAX``
#: on 64-bit), above a 4 x 64 x 128 x 128 float32 activation (16 MiB)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: free memory at the top of the heap kept rather than returned to the kernel
TRIM_THRESHOLD = 1 << 30
#: the pipelines' ``--worker_malloc`` settings: ``keep`` calls :func:`keep_freed_memory` in each worker process,
#: ``default`` leaves glibc's own settings
WORKER_MALLOC_SETTINGS = ("keep", "default")


def keep_freed_memory() -> str:
    """Sets glibc's mmap and trim thresholds so freed blocks stay mapped for reuse; returns what was done, for the
    log. Elsewhere (macOS, musl) nothing is changed and the answer says so."""
    if not sys.platform.startswith("linux"):
        return f"allocator left as it is ({sys.platform})"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "allocator left as it is (no glibc mallopt)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return "allocator left as it is (mallopt refused)"
    return (f"glibc malloc keeps freed memory (mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
            f"trim threshold {TRIM_THRESHOLD >> 20} MiB)")
