"""Matching inputs and reading their bytes through fsspec.

:class:`MatchInputs` expands a folder or glob *on a worker* (so a corpus of millions of names never goes
into the pipeline graph), records how many inputs it found in ``_runs/<run>/matched.json`` (the left side
of the accounting equation), and reshuffles: like ``fileio.MatchFiles``, the listing comes out of a
single element, and without the ``Reshuffle`` every image would be processed by the one worker that
listed them.
"""

from __future__ import annotations

import time

import apache_beam as beam

from nicbeam.transforms.accounting import Accounting
from nicbeam.transforms.paths import SourceFile, join, list_inputs, resolve

#: Storage errors worth retrying inside the DoFn before handing the bundle back to the runner.
_READ_ATTEMPTS = 3


class StorageReadError(Exception):
    """A source exists in the listing but cannot be read for a permanent reason (gone, forbidden)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def read_bytes(uri: str) -> bytes:
    """Read a whole object. Missing or forbidden objects raise :class:`StorageReadError` (recorded as
    errors ``missing`` / ``permission_denied``); other ``OSError``s are retried a few times and then
    raised, so the runner retries the bundle (transient network or disk errors are not data errors)."""
    fs, path = resolve(uri)
    for attempt in range(_READ_ATTEMPTS):
        try:
            return fs.cat_file(path)
        except FileNotFoundError as exc:
            raise StorageReadError("missing", f"input disappeared before it was read: {exc}") from exc
        except PermissionError as exc:
            raise StorageReadError("permission_denied", f"input cannot be read: {exc}") from exc
        except IsADirectoryError as exc:
            raise StorageReadError("unreadable", f"input is a directory: {exc}") from exc
        except OSError:
            if attempt == _READ_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


class _ExpandInput(beam.DoFn):
    def __init__(self, run_url: str | None, suffix: str | None, progress_dir: str | None):
        self._run_url = run_url
        self._suffix = suffix
        self._progress_dir = progress_dir

    def setup(self):
        self._acc = Accounting(self._progress_dir)

    def process(self, input_spec: str):
        from nicbeam.transforms.write import write_json

        sources = list(list_inputs(input_spec, suffix=self._suffix))
        if self._run_url:
            write_json(
                join(self._run_url, "matched.json"),
                {"input": input_spec, "count": len(sources), "bytes": sum(max(s.size, 0) for s in sources)},
            )
        self._acc.matched(len(sources))
        self._acc.flush()
        yield from sources


class MatchInputs(beam.PTransform):
    """``input_spec`` (folder, glob or file on any fsspec filesystem) -> reshuffled :class:`SourceFile`s."""

    def __init__(self, input_spec: str, *, run_url: str | None = None, suffix: str | None = None,
                 progress_dir: str | None = None):
        super().__init__()
        self._input_spec = input_spec
        self._run_url = run_url
        self._suffix = suffix
        self._progress_dir = progress_dir

    def expand(self, pbegin):
        return (
            pbegin
            | "Pattern" >> beam.Create([self._input_spec])
            | "Expand" >> beam.ParDo(_ExpandInput(self._run_url, self._suffix, self._progress_dir))
            | "Reshuffle" >> beam.Reshuffle()
        )


def source_from_match(base: str):
    """Turn a ``fileio`` ``FileMetadata`` (from ``MatchContinuously`` / ``MatchFiles``) into a
    :class:`SourceFile` relative to ``base`` (the folder being watched)."""

    def convert(metadata) -> SourceFile:
        path = metadata.path
        prefix = base.rstrip("/") + "/"
        rel = path[len(prefix):] if path.startswith(prefix) else path.rsplit("/", 1)[-1]
        return SourceFile(path, rel, int(getattr(metadata, "size_in_bytes", -1) or -1))

    return convert
