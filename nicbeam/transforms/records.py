"""The job configuration every DoFn receives, and builders for metadata and error rows.

Rows are plain dicts with exactly the columns of :data:`~nicbeam.transforms.schema.METADATA_SCHEMA` /
:data:`~nicbeam.transforms.schema.ERROR_SCHEMA` (decompress adds ``output_uri``, see
:data:`DECOMPRESS_SCHEMA`), so they pickle cheaply between stages and convert straight to Arrow.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from nicbeam.codecs.spec import CodecSetting
from nicbeam.transforms.accounting import worker_id
from nicbeam.transforms.paths import join, run_dir
from nicbeam.transforms.schema import METADATA_SCHEMA

#: decompress metadata: the compress/evaluate columns plus where the decoded image was written.
DECOMPRESS_SCHEMA = METADATA_SCHEMA.append(pa.field("output_uri", pa.string()))

#: Packed bitstreams (``--pack``): one row per image, the stream in a binary column.
BITSTREAM_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("setting", pa.string(), nullable=False),
        pa.field("codec", pa.string(), nullable=False),
        pa.field("bitstream_bytes", pa.int64(), nullable=False),
        pa.field("bitstream", pa.binary(), nullable=False),
    ]
)

METRIC_COLUMNS = ("psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db", "psnr_hvs", "psnr_hvs_m",
                  "lpips", "lpips_model", "nima_mean", "nima_std", "nima_model")


@dataclass(frozen=True)
class JobConfig:
    """Everything the DoFns of one run need; pickled into the pipeline."""

    run_id: str
    output: str
    settings: tuple[CodecSetting, ...] = ()
    max_pixels: int = 1 << 28
    alpha: str = "refuse"
    high_bit_depth: str = "refuse"
    frames: str = "refuse"
    metrics: str = "fast"  # none | fast (PSNR, PSNR-Y) | all
    batch_size: int = 8
    pack: bool = False
    keep_bitstreams: bool = True
    progress_dir: str | None = None
    device: str = "auto"
    torch_threads: int = 0  # intra-op threads per worker process for learned codecs; 0: PyTorch's default
    worker_malloc: str = "keep"  # keep: worker processes keep freed memory (nicbeam.allocator); default: glibc's
    perceptual: tuple[str, ...] = ()  # evaluate --metric lpips/nima (nicbeam.metrics.perceptual)
    lpips_weights: tuple[str, ...] = ()  # weight files, checked by the launcher before the pipeline starts
    nima_weights: tuple[str, ...] = ()
    export_latents: str | None = None  # compress: also write latents ("parquet" or "npy"); latents job: storage

    @property
    def run_url(self) -> str:
        return run_dir(self.output, self.run_id)

    @property
    def tmp_url(self) -> str:
        return join(self.run_url, "_tmp")

    @classmethod
    def from_run_args(cls, args: Any, run_id: str, **job_specific: Any) -> "JobConfig":
        """The output and the worker options every job takes (``options.add_run_arguments``) from parsed CLI args,
        plus the job's own fields."""
        return cls(
            run_id=run_id,
            output=args.output.rstrip("/"),
            device=args.device,
            torch_threads=args.torch_threads,
            worker_malloc=args.worker_malloc,
            **job_specific,
        )

    @classmethod
    def from_args(cls, args: Any, run_id: str, settings: tuple[CodecSetting, ...], **job_specific: Any) -> "JobConfig":
        """The options every encoding job shares (image policy, metrics, batching, run options) from parsed CLI
        args."""
        return cls.from_run_args(
            args,
            run_id,
            settings=settings,
            max_pixels=args.max_pixels,
            alpha=args.alpha,
            high_bit_depth=args.high_bit_depth,
            frames=args.frames,
            metrics=args.metrics,
            batch_size=args.batch_size,
            **job_specific,
        )

    def load_options(self) -> dict[str, Any]:
        return {
            "max_pixels": self.max_pixels,
            "alpha": self.alpha,
            "high_bit_depth": self.high_bit_depth,
            "frames": self.frames,
        }


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def error_row(
    cfg: JobConfig,
    source_uri: str,
    stage: str,
    reason: str,
    message: str,
    setting: str | None = None,
) -> dict:
    return {
        "run_id": cfg.run_id,
        "source_uri": source_uri,
        "stage": stage,
        "reason": reason,
        "message": message[:2000],
        "setting": setting,
        "worker": worker_id(),
        "created_at": now_utc(),
    }


def params_json(setting: CodecSetting) -> str:
    return json.dumps(setting.param_dict, sort_keys=True, separators=(",", ":"))


def metadata_row(
    cfg: JobConfig,
    *,
    source_uri: str,
    source_bytes: int | None,
    source_format: str | None,
    source_mode: str | None,
    width: int | None,
    height: int | None,
    setting: CodecSetting,
    codec: Any,
    bitstream_uri: str | None,
    bitstream_bytes: int,
    payload_bytes: int | None,
    encode_ms: float | None,
    decode_ms: float | None,
    quality: dict | None = None,
) -> dict:
    from nicbeam import __version__
    from nicbeam.metrics import bpp

    row = {
        "run_id": cfg.run_id,
        "source_uri": source_uri,
        "source_bytes": source_bytes,
        "source_format": source_format,
        "source_mode": source_mode,
        "width": width,
        "height": height,
        "codec": setting.codec,
        "setting": setting.label,
        "params": params_json(setting),
        "lossless": bool(codec.lossless),
        "codec_implementation": codec.implementation(),
        "codec_version": int(codec.payload_version),
        "model_digest": codec.model_digest.hex() or None,
        "bitstream_uri": bitstream_uri,
        "bitstream_bytes": bitstream_bytes,
        "payload_bytes": payload_bytes,
        "bpp": bpp(payload_bytes, height, width) if height and width and payload_bytes is not None else None,
        "encode_ms": encode_ms,
        "decode_ms": decode_ms,
        "device": str(codec.device),
        "worker": worker_id(),
        "nicbeam_version": __version__,
        "created_at": now_utc(),
    }
    for column in METRIC_COLUMNS:
        row[column] = (quality or {}).get(column)
    return row
