"""The Beam steps of ``nicbeam recompress``: match (excluding OUTPUT), decide and verify per file, write.

    MatchForRecompress -> RecompressDoFn -> {manifest, errors} -> WriteTable each

Per input exactly one manifest row (main output); a failed input also gives an error row (``errors``,
the schema every job shares). Outputs go to ``OUTPUT/<rel>.nicb`` through the same atomic writes as
``compress``, are read back and checked against the sha256 of the verified stream, and then journaled
(:mod:`nicbeam.transforms.recompress_records`). Sources are only ever read: nothing is written at a path
that is not under OUTPUT, and nothing under OUTPUT is matched as a source.

Fault point (see :mod:`nicbeam.transforms.faults`): ``after_journal_write`` (key: the relative path).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from nicbeam.codecs.spec import CodecSetting
from nicbeam.transforms import faults
from nicbeam.transforms.accounting import Accounting
from nicbeam.transforms.encode import ERRORS
from nicbeam.transforms.io import StorageReadError, read_bytes
from nicbeam.transforms.paths import (
    BITSTREAM_SUFFIX,
    SourceFile,
    UnsafePathError,
    join,
    list_inputs,
    resolve,
    safe_relative_path,
    to_uri,
)
from nicbeam.transforms.records import JobConfig, error_row, params_json
from nicbeam.transforms.recompress_records import (
    journal_bytes,
    journal_url,
    manifest_row,
    options_fingerprint,
    parse_journal,
    sha256_hex,
)
from nicbeam.transforms.write import atomic_write, write_json

JPEG_TRANSCODE = "jpeg-transcode"


@dataclass(frozen=True)
class RecompressConfig(JobConfig):
    """A :class:`JobConfig` plus what recompress decides with (``settings`` holds the fixed codecs)."""

    modes: tuple[str, ...] = ()
    lossless_settings: tuple[CodecSetting, ...] = ()
    target_codec: str | None = None
    target_params: tuple[tuple[str, Any], ...] = ()
    target_metric: str | None = None
    target_value: float | None = None
    max_steps: int = 10
    resume: bool = True

    @property
    def fingerprint(self) -> str:
        """Digest of every option that decides a file's outcome (journal rows count only under the same)."""
        return options_fingerprint({
            "modes": self.modes,
            "lossless": [s.label for s in self.lossless_settings],
            "target": [self.target_codec, sorted(self.target_params), self.target_metric, self.target_value,
                       self.max_steps] if "target-quality" in self.modes else None,
            "load": self.load_options(),
        })

    @property
    def labels(self) -> list[str]:
        """One label per mode for job.json and the summary."""
        out = []
        for mode in self.modes:
            if mode == "lossless-jpeg":
                out.append(f"lossless-jpeg:{JPEG_TRANSCODE}")
            elif mode == "lossless":
                out.append("lossless:" + "|".join(s.label for s in self.lossless_settings))
            else:
                fixed = "".join(f":{k}={v}" for k, v in self.target_params)
                out.append(f"target-quality:{self.target_codec}{fixed}:{self.target_metric}>={self.target_value:g}")
        return out


# ------------------------------------------------------------------------------------------ matching
class _ExpandExcludingOutput(beam.DoFn):
    """List INPUT on a worker, dropping everything under OUTPUT (OUTPUT may lie inside INPUT)."""

    def __init__(self, output: str, run_url: str, progress_dir: str | None):
        self._output = output
        self._run_url = run_url
        self._progress_dir = progress_dir

    def process(self, input_spec: str):
        out_fs, out_path = resolve(self._output)
        excluded = to_uri(out_fs, out_path.rstrip("/"))
        sources, skipped = [], 0
        for src in list_inputs(input_spec):
            if src.uri == excluded or src.uri.startswith(excluded + "/"):
                skipped += 1
            else:
                sources.append(src)
        write_json(join(self._run_url, "matched.json"), {
            "input": input_spec, "count": len(sources), "bytes": sum(max(s.size, 0) for s in sources),
            "excluded_under_output": skipped,
        })
        acc = Accounting(self._progress_dir)
        acc.matched(len(sources))
        acc.flush()
        yield from sources


class MatchForRecompress(beam.PTransform):
    """``input_spec`` -> reshuffled :class:`SourceFile`s, none of them under ``output``."""

    def __init__(self, input_spec: str, output: str, *, run_url: str, progress_dir: str | None = None):
        super().__init__()
        self._input_spec = input_spec
        self._output = output
        self._run_url = run_url
        self._progress_dir = progress_dir

    def expand(self, pbegin):
        return (
            pbegin
            | "Pattern" >> beam.Create([self._input_spec])
            | "Expand" >> beam.ParDo(_ExpandExcludingOutput(self._output, self._run_url, self._progress_dir))
            | "Reshuffle" >> beam.Reshuffle()
        )


# ------------------------------------------------------------------------------------------ codecs per process
_CODECS: dict[tuple[str, str], Any] = {}
_CODECS_LOCK = threading.Lock()


def shared_codec(setting: CodecSetting, device: str):
    """One codec instance per (setting, device) per worker process, shared by its threads."""
    from nicbeam.transforms.codec_runtime import build_codec

    key = (setting.label, device)
    with _CODECS_LOCK:
        codec = _CODECS.get(key)
        if codec is None:
            codec = _CODECS[key] = build_codec(setting, device)
        return codec


# ------------------------------------------------------------------------------------------ per file
class RecompressDoFn(beam.DoFn):
    """``SourceFile`` -> one manifest row (main) and, for failures, one error row (``errors``)."""

    def __init__(self, cfg: RecompressConfig):
        self.cfg = cfg

    def setup(self):
        from nicbeam.codecs.spec import make_setting
        from nicbeam.transforms.codec_runtime import prepare_worker
        from nicbeam.transforms.quality_search import knob_for

        prepare_worker(self.cfg.torch_threads, self.cfg.worker_malloc)
        self._acc = Accounting(self.cfg.progress_dir)
        self._out_fs, self._out_root = resolve(self.cfg.output)
        _, self._tmp_root = resolve(self.cfg.tmp_url)
        self._fingerprint = self.cfg.fingerprint
        self._transcode = make_setting(JPEG_TRANSCODE)
        self._knob = None
        if "target-quality" in self.cfg.modes:
            self._knob = knob_for(self.cfg.target_codec, dict(self.cfg.target_params), device=self.cfg.device)

    def finish_bundle(self):
        self._acc.flush()

    def _codec_at(self, value):
        from nicbeam.codecs.spec import make_setting

        setting = make_setting(self.cfg.target_codec, {**dict(self.cfg.target_params), self._knob.param: value})
        return setting, shared_codec(setting, self.cfg.device)

    def process(self, src: SourceFile):
        from nicbeam.transforms import recompress_modes as modes

        try:
            rel = safe_relative_path(src.rel_path)
        except UnsafePathError as exc:
            yield from self._failed(src, None, "match", exc.reason, str(exc))
            return
        try:
            data = read_bytes(src.uri)
        except StorageReadError as exc:
            yield from self._failed(src, rel, "read", exc.reason, str(exc))
            return
        self._acc.read(len(data))
        digest = sha256_hex(data)
        done = self._journaled(src, rel, digest) if self.cfg.resume else None
        if done is not None:
            self._acc.ok(done["output_bytes"] or 0)
            yield done
            return
        facts = {"rel_path": rel, "source_bytes": len(data), "source_sha256": digest}
        mode, why_not = modes.mode_for(data, self.cfg.modes)
        if mode is None:
            outcome = modes.Outcome("kept", reason=why_not, source_format=modes.sniff_format(data),
                                    message=f"no mode of {', '.join(self.cfg.modes)} applies to this file")
        elif mode == "lossless-jpeg":
            outcome = modes.lossless_jpeg(data, self._transcode, shared_codec(self._transcode, self.cfg.device))
        elif mode == "lossless":
            choices = [(s, shared_codec(s, self.cfg.device)) for s in self.cfg.lossless_settings]
            outcome = modes.lossless(data, choices, self.cfg.load_options())
        else:
            outcome = modes.target_quality(data, self._codec_at, self._knob, self.cfg.target_metric,
                                           self.cfg.target_value, self.cfg.max_steps, self.cfg.load_options())
        yield from self._finish(src, rel, data, facts, outcome)

    # ------------------------------------------------------------------------------------ helpers
    def _journaled(self, src: SourceFile, rel: str, digest: str) -> dict | None:
        """The previous row of this file when it still holds: same source, same options, output intact.

        URIs are today's (an archive or OUTPUT moved as a whole resumes as well)."""
        fs, path = resolve(journal_url(self.cfg.output, rel))
        try:
            row = parse_journal(fs.cat_file(path), self._fingerprint)
        except (FileNotFoundError, OSError):
            return None
        if row is None or row["source_sha256"] != digest or row["status"] not in ("recompressed", "kept"):
            return None
        row.update(run_id=self.cfg.run_id, resumed=True, source_uri=src.uri)
        if row["status"] == "recompressed":
            row["output_uri"] = join(self.cfg.output, rel + BITSTREAM_SUFFIX)
            try:
                if sha256_hex(self._out_fs.cat_file(join(self._out_root, rel + BITSTREAM_SUFFIX))) != \
                        row["output_sha256"]:
                    return None  # corrupt, partial or replaced output: redo it
            except (FileNotFoundError, OSError):
                return None
        return row

    def _failed(self, src: SourceFile, rel: str | None, stage: str, reason: str, message: str, **facts: Any):
        self._acc.failed(reason)
        facts.setdefault("verified", False)
        facts.setdefault("bytes_saved", 0)
        setting = facts.get("setting")
        yield beam.pvalue.TaggedOutput(ERRORS, error_row(self.cfg, src.uri, stage, reason, message, setting))
        yield manifest_row(self.cfg.run_id, src.uri, "failed", rel_path=rel, reason=reason, message=message[:2000],
                           **facts)

    def _finish(self, src: SourceFile, rel: str, data: bytes, facts: dict, outcome):
        setting = outcome.setting
        row_facts = dict(
            facts, source_format=outcome.source_format, width=outcome.width, height=outcome.height,
            mode=outcome.mode, codec=setting.codec if setting else None, setting=setting.label if setting else None,
            params=params_json(setting) if setting else None, quality_metric=None, quality_target=None,
            quality_reached=outcome.quality_reached, search_steps=outcome.search_steps,
            candidates=_json(outcome.candidates) if outcome.candidates else None, encode_ms=outcome.encode_ms,
        )
        if outcome.mode == "target-quality":
            row_facts.update(quality_metric=self.cfg.target_metric, quality_target=self.cfg.target_value)
        if outcome.status == "failed":
            yield from self._failed(src, rel, outcome.stage or "encode", outcome.reason,
                                    outcome.message or "", **{k: v for k, v in row_facts.items() if k != "rel_path"})
            return
        if outcome.status == "recompressed":
            stream = outcome.stream
            out_rel = rel + BITSTREAM_SUFFIX
            path = join(self._out_root, out_rel)
            atomic_write(self._out_fs, path, stream, tmp_dir=join(self._tmp_root, "objects"))
            digest = sha256_hex(stream)
            if sha256_hex(self._out_fs.cat_file(path)) != digest:
                yield from self._failed(src, rel, "write", "write_mismatch",
                                        "the object read back differs from the verified stream",
                                        **{k: v for k, v in row_facts.items() if k != "rel_path"})
                return
            row_facts.update(output_uri=join(self.cfg.output, out_rel), output_bytes=len(stream),
                             output_sha256=digest, verified=outcome.verified, bytes_saved=len(data) - len(stream))
        else:
            row_facts.update(verified=False, bytes_saved=0)
        row = manifest_row(self.cfg.run_id, src.uri, outcome.status, reason=outcome.reason,
                           message=outcome.message, **row_facts)
        fs, path = resolve(journal_url(self.cfg.output, rel))
        atomic_write(fs, path, journal_bytes(row, self._fingerprint), tmp_dir=join(self._tmp_root, "journal"))
        faults.maybe_fail("after_journal_write", rel)
        self._acc.ok(row["output_bytes"] or 0)
        yield row


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class RecompressFiles(beam.PTransform):
    """``SourceFile``s -> ``{"manifest": rows, "errors": rows}``."""

    def __init__(self, cfg: RecompressConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, sources):
        results = sources | "Recompress" >> beam.ParDo(RecompressDoFn(self.cfg)).with_outputs(ERRORS, main="manifest")
        return {"manifest": results.manifest, "errors": results[ERRORS]}
