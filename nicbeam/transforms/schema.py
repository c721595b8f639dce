"""Arrow schemas of the Parquet files nicbeam jobs write (documented in ``docs/metadata.md``).

One metadata row per image and codec setting; one error row per input that did not make it, with the
reason. Both load directly in DuckDB, pandas and BigQuery.

``bpp`` counts the codec payload (``payload_bytes``: for ``jpeg`` exactly the JPEG file), as papers and the
classical anchors do; ``bitstream_bytes`` is the whole nicbeam stream, container header included.
"""

from __future__ import annotations

import pyarrow as pa

METADATA_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_bytes", pa.int64()),
        pa.field("source_format", pa.string()),
        pa.field("source_mode", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("codec", pa.string(), nullable=False),
        pa.field("setting", pa.string(), nullable=False),
        pa.field("params", pa.string()),
        pa.field("lossless", pa.bool_()),
        pa.field("codec_implementation", pa.string()),
        pa.field("codec_version", pa.int32()),
        pa.field("model_digest", pa.string()),
        pa.field("bitstream_uri", pa.string()),
        pa.field("bitstream_bytes", pa.int64()),
        pa.field("payload_bytes", pa.int64()),
        pa.field("bpp", pa.float64()),
        pa.field("psnr_rgb", pa.float64()),
        pa.field("psnr_y", pa.float64()),
        pa.field("ms_ssim", pa.float64()),
        pa.field("ms_ssim_db", pa.float64()),
        pa.field("psnr_hvs", pa.float64()),
        pa.field("psnr_hvs_m", pa.float64()),
        pa.field("lpips", pa.float64()),
        pa.field("lpips_model", pa.string()),
        pa.field("nima_mean", pa.float64()),
        pa.field("nima_std", pa.float64()),
        pa.field("nima_model", pa.string()),
        pa.field("encode_ms", pa.float64()),
        pa.field("decode_ms", pa.float64()),
        pa.field("device", pa.string()),
        pa.field("worker", pa.string()),
        pa.field("nicbeam_version", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

ERROR_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string()),
        pa.field("setting", pa.string()),
        pa.field("worker", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)
