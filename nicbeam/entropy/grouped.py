"""Latent layouts shared by the mean-scale hyperprior codecs (``mbt2018-mean``, ``ckbd-hyperprior``): z channel
after channel with one table row each, y grouped by scale index (index 0 first, each group in the given order);
each block followed by its escapes."""

from __future__ import annotations

import numpy as np

from nicbeam.entropy.coder import Decoder, Encoder, TableSet


def encode_per_channel(enc: Encoder, values: np.ndarray, tables: TableSet) -> None:
    """Code channel ``c`` of ``values`` (C, ...) with table row ``c``, channel after channel, then their escapes."""
    for c in range(values.shape[0]):
        enc.encode(values[c].ravel(), tables, c)
    enc.flush_escapes()


def decode_per_channel(dec: Decoder, count: int, tables: TableSet) -> np.ndarray:
    """Inverse of :func:`encode_per_channel`: (len(tables), count) int64, ``count`` values per channel."""
    rows = [dec.decode(count, tables, c) for c in range(len(tables))]
    dec.flush_escapes()  # fills escaped values into the rows in place: stack only after it
    return np.stack(rows)


def encode_grouped(enc: Encoder, symbols: np.ndarray, indices: np.ndarray, tables: TableSet) -> None:
    """Code ``symbols`` (1-D) each with the table of its scale index, grouped by index, then their escapes."""
    order = np.argsort(indices, kind="stable")
    counts = np.bincount(indices, minlength=len(tables))
    pos = 0
    for j, n in enumerate(counts):
        if n:
            enc.encode(symbols[order[pos : pos + n]], tables, j)
            pos += n
    enc.flush_escapes()


def decode_grouped(dec: Decoder, indices: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of :func:`encode_grouped`: the symbols (1-D int64) for these scale indices."""
    order = np.argsort(indices, kind="stable")
    counts = np.bincount(indices, minlength=len(tables))
    out = np.empty(indices.size, dtype=np.int64)
    pos, parts = 0, []
    for j, n in enumerate(counts):
        if n:
            parts.append((order[pos : pos + n], dec.decode(int(n), tables, j)))
            pos += n
    dec.flush_escapes()  # fills escaped values into the arrays of `parts`: copy only after it
    for where, values in parts:
        out[where] = values
    return out
