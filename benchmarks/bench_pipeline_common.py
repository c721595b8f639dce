"""Helpers shared by the ``bench_pipeline_*.py`` benchmarks (not a benchmark itself).

* corpus building (Kodak copies, synthetic PNGs),
* running a command in a fresh subprocess while polling its whole process tree in ``/proc``
  (per-process CPU seconds, peak summed RSS) and reading the child's own ``ru_maxrss`` via ``wait4``,
* pausing another process (SIGSTOP / SIGCONT) for the duration of a measurement.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def kodak_sources() -> list[Path]:
    """Kodak PNGs: ``../shared/data/kodak`` (or ``/work/shared/data/kodak``), else the repo's 3 samples."""
    for folder in (REPO.parent / "shared" / "data" / "kodak", Path("/work/shared/data/kodak")):
        found = sorted(folder.glob("*.png"))
        if found:
            return found
    return sorted((REPO / "samples" / "kodak").glob("*.png"))


def make_kodak_corpus(dst: Path, images: int) -> list[Path]:
    """``images`` files under ``dst/copyNN/kodimXX.png``: the Kodak set repeated until there are enough."""
    sources = kodak_sources()
    if not sources:
        raise SystemExit("no Kodak PNGs found")
    out = []
    for i in range(images):
        src = sources[i % len(sources)]
        target = dst / f"copy{i // len(sources):02d}" / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        out.append(target)
    return out


def make_synthetic_corpus(dst: Path, images: int, size: int = 96, seed: int = 0) -> list[Path]:
    """``images`` small RGB PNGs (smooth gradient + noise, so codecs have real work), ``size`` x ``size``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for i in range(images):
        base = np.stack([(xx * 2 + i) % 256, (yy * 2 + 3 * i) % 256, ((xx + yy) + 7 * i) % 256], axis=-1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype("uint8")
        target = dst / f"d{i // 100:03d}" / f"img{i:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(target)
        out.append(target)
    return out


def nicbeam_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# ------------------------------------------------------------------------------------------ /proc polling
def _proc_table() -> dict[int, tuple[int, float, int]]:
    """pid -> (ppid, cpu seconds, rss kB) for every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        # fields after "comm": state(0) ppid(1) ... utime(11) stime(12) ... rss(21)
        table[int(entry)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK, int(rest[21]) * _PAGE_KB)
    return table


def _descendants(root: int, table: dict) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out


def run_tree(cmd: list[str], *, poll_s: float = 0.1, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd`` in a fresh subprocess; poll its process tree until it exits.

    Returns ``wall_s``, ``rc``, ``cpu_by_pid`` (last CPU seconds seen per process of the tree, with its
    command line), ``peak_tree_rss_kb`` (largest sum of RSS over the tree at one poll),
    ``child_maxrss_kb`` (the child's own peak RSS from ``wait4``; grandchildren are included only as
    a max, not a sum) and ``stderr`` (its tail).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env or nicbeam_env(), cwd=cwd or REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err_chunks: list[bytes] = []
    os.set_blocking(proc.stderr.fileno(), False)
    cpu: dict[int, float] = {}
    names: dict[int, str] = {}
    peak = 0
    rusage = None
    status = 0
    while True:
        table = _proc_table()
        tree = _descendants(proc.pid, table) if proc.pid in table else set()
        peak = max(peak, sum(table[p][2] for p in tree if p in table))
        for p in tree:
            cpu[p] = table[p][1]
            if p not in names:
                try:
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        names[p] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    names[p] = "?"
        with contextlib.suppress(BlockingIOError, TypeError):
            chunk = proc.stderr.read()
            if chunk:
                err_chunks.append(chunk)
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(poll_s)
    wall = time.perf_counter() - start
    os.set_blocking(proc.stderr.fileno(), True)
    err_chunks.append(proc.stderr.read() or b"")
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": wall,
        "rc": proc.returncode,
        "cpu_by_pid": {p: (cpu[p], names.get(p, "?")) for p in cpu},
        "peak_tree_rss_kb": peak,
        "child_maxrss_kb": rusage.ru_maxrss if rusage else 0,
        "stderr": b"".join(err_chunks).decode(errors="replace")[-4000:],
    }


@contextlib.contextmanager
def paused(pid: int | None):
    """SIGSTOP ``pid`` for the duration of the block; SIGCONT it afterwards, whatever happens."""
    if not pid:
        yield
        return
    os.kill(pid, signal.SIGSTOP)
    print(f"[bench] paused pid {pid} (SIGSTOP)", flush=True)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        print(f"[bench] resumed pid {pid} (SIGCONT)", flush=True)


def reproduce_line(script: str, argv: list[str]) -> str:
    return "cd " + shlex.quote(str(REPO)) + " && PYTHONPATH=. " + shlex.quote(PYTHON) + " " + " ".join(
        shlex.quote(a) for a in [script, *argv]
    )
