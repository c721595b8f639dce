"""Interleaved rANS over many lanes, vectorised with numpy: one call codes a whole batch of symbols, each
with its own integer table row.

Why not constriction (the project's range coder, :mod:`nicbeam.entropy.coder`): a wavefront decoder decodes
1-2 thousand symbols per step, each under a different table row; constriction takes either one model per call
(~3 us per call) or a per-symbol probability matrix (~1 us per symbol here, with 256-entry rows), several
times the whole MLP's cost. Here a batch is coded by a few numpy operations on uint64 arrays.

Format: 32-bit states in [2**16, 2**32), 16-bit renormalisation words, 16-bit probabilities (rows sum to
2**16, every entry >= 1). Symbol ``i`` of a batch goes to lane ``i % lanes``; a batch larger than ``lanes`` is
coded in consecutive chunks. The decoder reads the renormalisation words of a chunk in ascending lane order.
The encoder starts every lane at 2**16, so a decoder must end with every lane at 2**16 having read every word:
:meth:`Decoder.finish` checks both (a strong integrity check on a damaged stream).
"""

from __future__ import annotations

import struct

import numpy as np

from nicbeam.codecs.errors import PayloadError

PROB_BITS = 16
_LOW = np.uint64(1 << 16)
_MASK = np.uint64((1 << 16) - 1)
_SIXTEEN = np.uint64(16)


class Tables:
    """Integer frequency rows (R, M) -> per-entry starts and a flat sorted key array for decoding."""

    def __init__(self, freq: np.ndarray) -> None:
        freq = np.asarray(freq, dtype=np.int64)
        if freq.ndim != 2 or (freq.sum(axis=1) != 1 << PROB_BITS).any() or freq.min() < 1:
            raise ValueError("rANS table rows must be positive integers summing to 2**16")
        self.rows, self.size = freq.shape
        self.freq = freq.astype(np.uint64).reshape(-1)
        self.start = (np.cumsum(freq, axis=1) - freq).astype(np.uint64).reshape(-1)
        self._lookup: np.ndarray | None = None
        self._search: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def lookup(self) -> np.ndarray:
        """(R * 2**16,) symbol of every (row, slot): decoding is one gather (built on first use, R * 64 KiB;
        a binary search over all rows' starts measured 4x slower here, cache-bound)."""
        if self._lookup is None:
            dtype = np.uint8 if self.size <= 256 else np.uint16
            freq = self.freq.reshape(self.rows, self.size).astype(np.int64)
            symbols = np.tile(np.arange(self.size, dtype=dtype), self.rows)
            self._lookup = np.repeat(symbols, freq.reshape(-1))
        return self._lookup


    #: slots per bucket of :attr:`search`'s coarse table
    BUCKET_BITS = 6

    @property
    def search(self) -> tuple[np.ndarray, np.ndarray]:
        """Compact decoding tables for the compiled coder: ``cum`` (R * (M + 1),) uint32 cumulative
        frequencies, and ``coarse`` (R * 2**(16 - BUCKET_BITS),) the symbol holding the first slot of each
        bucket; a slot's symbol is found from its bucket's by a short forward scan. ~1 MB for 512 rows of 256
        symbols, where :attr:`lookup` is 32 MB and decoding from it was bound by cache and TLB misses."""
        if self._search is None:
            freq = self.freq.reshape(self.rows, self.size).astype(np.int64)
            cum = np.zeros((self.rows, self.size + 1), dtype=np.int64)
            np.cumsum(freq, axis=1, out=cum[:, 1:])
            firsts = np.arange(0, 1 << PROB_BITS, 1 << self.BUCKET_BITS)
            coarse = np.stack([np.searchsorted(row, firsts, side="right") - 1 for row in cum])
            dtype = np.uint8 if self.size <= 256 else np.uint16
            self._search = (cum.astype(np.uint32).reshape(-1), coarse.astype(dtype).reshape(-1))
        return self._search


class Encoder:
    """Collects (rows, symbols) batches in decoding order; :meth:`finish` codes them in reverse (rANS)."""

    def __init__(self, tables: Tables, lanes: int) -> None:
        self.tables = tables
        self.lanes = int(lanes)
        self.batches: list[tuple[np.ndarray, np.ndarray]] = []

    def encode(self, rows: np.ndarray, symbols: np.ndarray) -> None:
        # compact until finish(): the whole image's symbols are held (rANS codes them in reverse)
        kind = np.uint16 if max(self.tables.rows, self.tables.size) <= 1 << 16 else np.int64
        for i in range(0, len(rows), self.lanes):
            self.batches.append((np.asarray(rows[i : i + self.lanes]).astype(kind),
                                 np.asarray(symbols[i : i + self.lanes]).astype(kind)))

    def finish(self) -> bytes:
        t = self.tables
        state = np.full(self.lanes, 1 << 16, dtype=np.uint64)
        chunks: list[np.ndarray] = []
        for rows, symbols in reversed(self.batches):
            n = len(rows)
            idx = rows.astype(np.int64) * t.size + symbols.astype(np.int64)
            f, start = t.freq[idx], t.start[idx]
            s = state[:n]
            emit = s >= (f << _SIXTEEN)
            if emit.any():
                chunks.append((s[emit] & _MASK).astype("<u2"))
                s = np.where(emit, s >> _SIXTEEN, s)
            state[:n] = ((s // f) << _SIXTEEN) + (s % f) + start
        words = np.concatenate(chunks[::-1]) if chunks else np.zeros(0, dtype="<u2")
        return struct.pack("<I", self.lanes) + state.astype("<u4").tobytes() + words.tobytes()


class Decoder:
    """Decodes batches in the order they were encoded; raises PayloadError on any inconsistency."""

    def __init__(self, tables: Tables, data: bytes, max_lanes: int) -> None:
        self.tables = tables
        if len(data) < 4:
            raise PayloadError("rANS stream shorter than its lane count")
        (lanes,) = struct.unpack_from("<I", data)
        if not 1 <= lanes <= max_lanes:
            raise PayloadError(f"rANS stream declares {lanes} lanes (1..{max_lanes} allowed)")
        end = 4 + 4 * lanes
        if len(data) < end or (len(data) - end) % 2:
            raise PayloadError("rANS stream truncated in its states or words")
        self.lanes = lanes
        self.state = np.frombuffer(data, dtype="<u4", count=lanes, offset=4).astype(np.uint64)
        if (self.state < _LOW).any():
            raise PayloadError("rANS stream has an invalid initial state")
        self.words = np.frombuffer(data, dtype="<u2", offset=end).astype(np.uint64)
        self.pos = 0

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """One symbol per entry of ``rows`` (int64 table rows), as int64."""
        out = np.empty(len(rows), dtype=np.int64)
        t = self.tables
        for i in range(0, len(rows), self.lanes):
            r = np.asarray(rows[i : i + self.lanes], dtype=np.int64)
            n = len(r)
            s = self.state[:n]
            slot = s & _MASK
            sym = t.lookup[(r << PROB_BITS) | slot.astype(np.int64)].astype(np.int64)
            pos = r * t.size + sym
            s = t.freq[pos] * (s >> _SIXTEEN) + slot - t.start[pos]
            need = s < _LOW
            count = int(need.sum())
            if count:
                if self.pos + count > len(self.words):
                    raise PayloadError("rANS stream ends before its symbols do")
                s[need] = (s[need] << _SIXTEEN) | self.words[self.pos : self.pos + count]
                self.pos += count
            self.state[:n] = s
            out[i : i + n] = sym
        return out

    def finish(self) -> None:
        if self.pos != len(self.words):
            raise PayloadError(f"{len(self.words) - self.pos} unread rANS words: the stream is damaged")
        if (self.state != _LOW).any():
            raise PayloadError("rANS lanes did not return to their initial state: the stream is damaged")
