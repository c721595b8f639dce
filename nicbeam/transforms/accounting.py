"""Accounting: Beam metrics counters, live progress for local runs, and the end-of-run summary.

Counters (namespace ``nicbeam``): ``inputs_matched``, ``images_read``, ``images_ok`` (encoded, decoded or
evaluated), ``images_failed`` and ``failed_<reason>``, ``bytes_in``, ``bytes_out``. They are visible in
the Dataflow/Flink/Spark UIs and in ``PipelineResult.metrics()``.

Progress: a DoFn cannot print reliably from worker processes, and the FnApiRunner only returns metrics
once the pipeline has finished. So for local runs each worker *process* keeps a small tally that it
writes (at most twice a second, and at the end of each bundle) as ``<host>-<pid>.json`` into a local
progress folder chosen by the launcher; the launcher sums those files every few seconds. On remote
runners the folder does not exist on the workers and the tally is a no-op.

Summary: after the run, the launcher compares the matched inputs (``matched.json`` written by the match
step) with the rows actually committed to the metadata and errors tables (their manifests, and the
tables themselves for the per-reason breakdown and a duplicate check). "Nothing lost, nothing doubled"
is the equation in :func:`build_summary`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any

NAMESPACE = "nicbeam"


def worker_id() -> str:
    """``host:pid`` of the current worker process, recorded in every row."""
    return f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------------------------------ progress tally
class _ProcessTally:
    """Per-process counts, written to ``progress_dir/<host>-<pid>.json`` for the local launcher."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.last_write = 0.0
        self.dirs: set[str] = set()

    def add(self, progress_dir: str | None, **deltas: int) -> None:
        if not progress_dir:
            return
        with self.lock:
            self.dirs.add(progress_dir)
            self.counts.update(deltas)
            if time.monotonic() - self.last_write >= 0.5:
                self._write_locked()

    def flush(self) -> None:
        with self.lock:
            self._write_locked()

    def _write_locked(self) -> None:
        self.last_write = time.monotonic()
        name = f"{socket.gethostname()}-{os.getpid()}.json"
        for folder in self.dirs:
            if not os.path.isdir(folder):  # a remote worker: the launcher's folder is not here
                continue
            tmp = os.path.join(folder, f".{name}.tmp")
            try:
                with open(tmp, "w") as handle:
                    json.dump(dict(self.counts), handle)
                os.replace(tmp, os.path.join(folder, name))
            except OSError:
                pass


_TALLY = _ProcessTally()


class Accounting:
    """Counters and progress tally used by the DoFns; create one in ``setup``."""

    def __init__(self, progress_dir: str | None) -> None:
        from apache_beam.metrics import Metrics

        self._metrics = Metrics
        self._progress_dir = progress_dir
        self._counters: dict[str, Any] = {}

    def _inc(self, name: str, value: int = 1) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = self._metrics.counter(NAMESPACE, name)
        counter.inc(value)

    def matched(self, count: int) -> None:
        self._inc("inputs_matched", count)
        _TALLY.add(self._progress_dir, matched=count)

    def read(self, nbytes: int) -> None:
        self._inc("images_read")
        self._inc("bytes_in", nbytes)
        _TALLY.add(self._progress_dir, bytes_in=nbytes)

    def ok(self, bytes_out: int = 0) -> None:
        self._inc("images_ok")
        if bytes_out:
            self._inc("bytes_out", bytes_out)
        _TALLY.add(self._progress_dir, done=1, bytes_out=bytes_out)

    def failed(self, reason: str, *, weight: int = 1) -> None:
        """One failed input (or input x setting); ``weight`` outcomes are done (evaluate: an input refused
        before any codec ran settles all its settings at once)."""
        self._inc("images_failed")
        self._inc(f"failed_{reason}")
        _TALLY.add(self._progress_dir, done=weight, failed=1)

    def flush(self) -> None:
        if self._progress_dir:
            _TALLY.flush()


def read_progress(progress_dir: str) -> Counter:
    """Sum the tallies of every worker process (read by the launcher)."""
    total: Counter = Counter()
    try:
        names = os.listdir(progress_dir)
    except OSError:
        return total
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            with open(os.path.join(progress_dir, name)) as handle:
                total.update(json.load(handle))
        except (OSError, ValueError):
            continue
    return total


class ProgressPrinter:
    """Background thread printing ``done/total, images/s, errors`` every ``interval`` seconds."""

    def __init__(self, progress_dir: str, interval: float = 3.0, unit: str = "images", stream=None,
                 per_input: int = 1) -> None:
        self.progress_dir = progress_dir
        self.per_input = per_input
        self.interval = interval
        self.unit = unit
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nicbeam-progress", daemon=True)
        self.start_time = time.monotonic()

    def __enter__(self) -> ProgressPrinter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)

    def line(self) -> str:
        counts = read_progress(self.progress_dir)
        elapsed = max(time.monotonic() - self.start_time, 1e-9)
        done = counts.get("done", 0)
        total = counts.get("matched", 0) * self.per_input
        of = f"/{total}" if total else ""
        mb_in, mb_out = counts.get("bytes_in", 0) / 1e6, counts.get("bytes_out", 0) / 1e6
        return (
            f"[nicbeam] {done}{of} {self.unit} done, {done / elapsed:.2f} {self.unit}/s, "
            f"{counts.get('failed', 0)} failed, {mb_in:.1f} MB in, {mb_out:.1f} MB out, {elapsed:.0f}s"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            print(self.line(), file=self.stream, flush=True)


# ------------------------------------------------------------------------------------------ summary
def metric_counters(result) -> dict[str, int]:
    """The ``nicbeam`` counters of a finished pipeline (committed values where the runner has them)."""
    try:
        from apache_beam.metrics.metric import MetricsFilter

        query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except Exception:  # some runners do not report metrics
        return {}
    out: Counter = Counter()
    for item in query.get("counters", []):
        value = item.committed if item.committed is not None else item.attempted
        out[item.key.metric.name] += int(value or 0)
    return dict(out)


def table_column_values(table_dir: str, columns: list[str]) -> dict[str, list]:
    """Read a few columns of every ``*.parquet`` file in a committed table folder."""
    import pyarrow.parquet as pq

    from nicbeam.transforms.paths import resolve

    fs, path = resolve(table_dir)
    values: dict[str, list] = {c: [] for c in columns}
    if not fs.exists(path):
        return values
    for name in sorted(fs.glob(path.rstrip("/") + "/*.parquet")):
        with fs.open(name, "rb") as handle:
            table = pq.read_table(handle, columns=columns)
        for c in columns:
            values[c].extend(table.column(c).to_pylist())
    return values


def build_summary(run_url: str, *, job: str, settings: list[str], matched: int | None, counters: dict) -> dict:
    """Reconcile inputs with committed outputs for one run directory.

    compress / decompress: ``inputs == ok_rows + error_rows``. evaluate: each input either fails before
    any codec runs (one error row with no setting) or yields, for every setting, one metadata row or one
    error row naming the setting, so ``inputs * settings == ok_rows + setting_errors + input_errors *
    settings``. ``duplicates`` counts (source, setting) pairs present more than once across both tables.
    """
    from nicbeam.transforms.paths import join

    main_table = "latents" if job == "latents" else "metadata"  # the latents job's rows are its latents table
    meta = table_column_values(join(run_url, main_table), ["source_uri", "setting"])
    errs = table_column_values(join(run_url, "errors"), ["source_uri", "setting", "reason"])
    ok_rows = len(meta["source_uri"])
    error_rows = len(errs["source_uri"])
    n_settings = max(1, len(settings))
    input_errors = sum(1 for s in errs["setting"] if not s)
    setting_errors = error_rows - input_errors
    keys = Counter(zip(meta["source_uri"], meta["setting"]))
    keys.update(zip(errs["source_uri"], [s or "*" for s in errs["setting"]]))
    duplicates = sum(n - 1 for n in keys.values() if n > 1)
    if job == "evaluate":
        expected = None if matched is None else matched * n_settings
        accounted = ok_rows + setting_errors + input_errors * n_settings
        inputs_with_outcome = len({u for u, _ in keys})
    else:
        expected = matched
        accounted = ok_rows + error_rows
        inputs_with_outcome = len({u for u, _ in keys})
    balanced = expected is not None and expected == accounted and duplicates == 0
    if matched is not None and job == "evaluate":
        balanced = balanced and inputs_with_outcome == matched
    return {
        "job": job,
        "inputs": matched,
        "settings": settings,
        "ok_rows": ok_rows,
        "error_rows": error_rows,
        "errors_by_reason": dict(sorted(Counter(errs["reason"]).items())),
        "expected_outcomes": expected,
        "accounted_outcomes": accounted,
        "duplicates": duplicates,
        "balanced": balanced,
        "counters": counters,
    }


def format_summary(summary: dict) -> str:
    reasons = ", ".join(f"{k}={v}" for k, v in summary["errors_by_reason"].items()) or "none"
    verdict = (
        "all inputs accounted for"
        if summary["balanced"]
        else "ACCOUNTING MISMATCH: some inputs are missing or doubled"
    )
    lines = [
        f"[nicbeam] {summary['job']} summary: {summary['inputs']} inputs x {max(1, len(summary['settings']))} "
        f"setting(s) = {summary['expected_outcomes']} expected outcomes; {summary['ok_rows']} ok + "
        f"{summary['error_rows']} error rows -> {summary['accounted_outcomes']} accounted, "
        f"{summary['duplicates']} duplicates: {verdict}",
        f"[nicbeam] errors by reason: {reasons}",
    ]
    if summary.get("elapsed_s") is not None:
        done = summary["ok_rows"] + summary["error_rows"]
        lines.append(
            f"[nicbeam] {summary['elapsed_s']:.1f}s, {done / max(summary['elapsed_s'], 1e-9):.2f} rows/s; "
            f"run directory {summary.get('run_dir')}"
        )
    return "\n".join(lines)
