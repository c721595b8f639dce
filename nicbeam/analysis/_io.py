"""Output of the analysis files to a local folder or an fsspec URL."""

from __future__ import annotations

import os
from pathlib import Path


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for an fsspec URL such as ``gs://bucket/dir`` or ``memory://x`` (``file://`` counts as local)."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


class Writer:
    """Writes named files into a local folder or an fsspec URL prefix."""

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        text = os.fspath(output_dir)
        self.url: str | None = None
        self.local: Path | None = None
        if is_url(text):
            import fsspec

            self.url = text.rstrip("/")
            fs, root = fsspec.core.url_to_fs(self.url)
            try:
                fs.makedirs(root, exist_ok=True)
            except Exception:  # object stores without directories need none
                pass
        else:
            self.local = Path(text.removeprefix("file://"))
            self.local.mkdir(parents=True, exist_ok=True)

    def location(self, name: str) -> Path | str:
        return self.local / name if self.local is not None else f"{self.url}/{name}"

    def write_bytes(self, name: str, data: bytes) -> None:
        if self.local is not None:
            (self.local / name).write_bytes(data)
            return
        import fsspec

        with fsspec.open(f"{self.url}/{name}", "wb") as handle:
            handle.write(data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode("utf-8"))
