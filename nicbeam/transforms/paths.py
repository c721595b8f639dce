"""Filesystem helpers on fsspec: resolving URLs, listing inputs, and safe deterministic output paths.

Every job reads and writes through fsspec, so local paths, ``gs://`` (gcsfs), ``s3://`` (s3fs) and
``memory://`` (tests) behave the same. Output objects live at a path that mirrors the input's path
relative to the input root; :func:`safe_relative_path` refuses any name that could escape the output
root (``..``, absolute paths, empty or control-character components), so no input name can write
outside OUTPUT.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
from fsspec.core import url_to_fs

#: Directory (under OUTPUT) holding one sub-directory per run: metadata, errors, manifests, summaries.
RUNS_DIR = "_runs"
#: File (under OUTPUT) naming the last run that finished successfully.
LATEST_FILE = "_LATEST"
#: Suffix of compressed objects written by ``nicbeam compress``.
BITSTREAM_SUFFIX = ".nicb"
#: Names of our own bookkeeping at the top of an output folder, skipped when that folder is an input.
RESERVED_TOP_LEVEL = (RUNS_DIR, LATEST_FILE)

_GLOB_CHARS = re.compile(r"[*?\[]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Protocols whose writes become visible only when complete (one object = one PUT), so no rename is needed.
OBJECT_STORE_PROTOCOLS = frozenset({"gs", "gcs", "s3", "s3a", "az", "abfs", "abfss", "adl", "oss", "memory"})


class UnsafePathError(ValueError):
    """An input name that cannot be mirrored under OUTPUT without escaping it."""

    reason = "unsafe_path"


@dataclass(frozen=True)
class SourceFile:
    """One matched input: its full URI, its path relative to the input root, and its size in bytes."""

    uri: str
    rel_path: str
    size: int = -1


def protocol_of(fs: fsspec.AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto[0] if isinstance(proto, (tuple, list)) else proto


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return protocol_of(fs) in ("file", "local")


def resolve(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and the protocol-less path for ``url`` (a local path or any fsspec URL)."""
    return url_to_fs(url)


def to_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URI recorded in metadata: a plain absolute path for local files, ``proto://path`` otherwise."""
    if is_local(fs):
        return path
    return fs.unstrip_protocol(path)


def join(base: str, *parts: str) -> str:
    """Join URL/path components with ``/`` (never ``os.sep``: object stores use ``/``)."""
    out = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def run_dir(output: str, run_id: str) -> str:
    """``OUTPUT/_runs/<run_id>``: everything one run writes besides the mirrored objects."""
    return join(output, RUNS_DIR, run_id)


def safe_relative_path(rel: str) -> str:
    """Return ``rel`` normalised to ``a/b/c`` or raise :class:`UnsafePathError` if it could escape a root.

    Refused: empty names, absolute paths, ``.``/``..`` or empty components (``a//b`` on object stores),
    backslashes (a Windows separator on some filesystems) and control characters.
    """
    if not rel or rel.startswith("/"):
        raise UnsafePathError(f"input name {rel!r} is empty or absolute")
    if "\\" in rel or _CONTROL.search(rel):
        raise UnsafePathError(f"input name {rel!r} contains a backslash or a control character")
    parts = rel.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(f"input name {rel!r} has an empty, '.' or '..' component")
    return "/".join(parts)


def glob_base(pattern: str) -> str:
    """The directory part of a glob before its first wildcard component (``data/**/*.png`` -> ``data``)."""
    parts = pattern.split("/")
    base: list[str] = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        base.append(part)
    else:  # no wildcard: a single file
        base = base[:-1]
    return "/".join(base) or ("/" if pattern.startswith("/") else "")


def has_magic(pattern: str) -> bool:
    return bool(_GLOB_CHARS.search(pattern))


def list_inputs(input_spec: str, *, suffix: str | None = None) -> Iterator[SourceFile]:
    """Expand a folder, a glob or a single file into :class:`SourceFile` records, sorted by path.

    A folder is walked recursively; its top-level ``_runs/`` and ``_LATEST`` (nicbeam's own bookkeeping,
    present when the folder is a previous job's OUTPUT) are skipped. ``suffix`` keeps only names ending
    with it (used by ``decompress`` on folders). Relative paths are taken from the folder, or from the
    glob's directory part; they are *not* checked here (see :func:`safe_relative_path`).
    """
    fs, path = resolve(input_spec)
    if has_magic(path):
        base = glob_base(path).rstrip("/")
        found = fs.glob(path, detail=True)
        entries = {p: info for p, info in found.items() if info.get("type") != "directory"}
    elif fs.isdir(path):
        base = path.rstrip("/")
        entries = fs.find(path, detail=True)
        entries = {
            p: info
            for p, info in entries.items()
            if info.get("type") != "directory" and _relative(p, base).split("/", 1)[0] not in RESERVED_TOP_LEVEL
        }
        if suffix:
            entries = {p: info for p, info in entries.items() if p.endswith(suffix)}
    elif fs.exists(path):
        base = posixpath.dirname(path.rstrip("/"))
        entries = {path: fs.info(path)}
    else:
        return
    for p in sorted(entries):
        size = entries[p].get("size")
        yield SourceFile(to_uri(fs, p), _relative(p, base), int(size) if size is not None else -1)


def _relative(path: str, base: str) -> str:
    if base in ("", "/"):
        return path.lstrip("/")
    if path.startswith(base + "/"):
        return path[len(base) + 1 :]
    return posixpath.basename(path)


def is_within(child: str, parent: str) -> bool:
    """True when URL ``child`` is ``parent`` or below it on the same filesystem (used to refuse OUTPUT
    inside INPUT, where a re-run would read its own outputs)."""
    fs_c, pc = resolve(child)
    fs_p, pp = resolve(parent)
    if protocol_of(fs_c) != protocol_of(fs_p):
        return False
    pc, pp = posixpath.normpath(pc), posixpath.normpath(pp)
    return pc == pp or pc.startswith(pp.rstrip("/") + "/")


def decoded_name(rel_stream_path: str, *, original_bytes: bool) -> str:
    """Output name for a decompressed stream: strip ``.nicb``; PNG output gets ``.png`` unless it has it.

    ``jpeg-transcode`` streams decode to the original JPEG file, so the name is the original name.
    """
    name = rel_stream_path.removesuffix(BITSTREAM_SUFFIX)
    if original_bytes or name.lower().endswith(".png"):
        return name
    return name + ".png"


def decoded_name_key(rel_stream_path: str) -> str:
    """The part of a stream's name its decoded name is made from: streams with the same key may decode to
    the same output (``x.nicb`` and ``x.png.nicb`` both give ``x.png``; on case-insensitive stores also
    ``x.PNG.nicb``), so decompress lets only one of them write."""
    name = rel_stream_path.removesuffix(BITSTREAM_SUFFIX)
    return name[:-4] if name.lower().endswith(".png") else name


def setting_dir_name(label: str) -> str:
    """A filesystem-safe folder name for a codec setting label (``jpeg:quality=50`` -> ``jpeg_quality=50``)."""
    return re.sub(r"[^A-Za-z0-9=._,+-]", "_", label)
