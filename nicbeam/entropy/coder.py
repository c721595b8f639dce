"""Range coding with constriction over integer tables, plus escape coding of out-of-range values.

Why constriction (a Rust ANS / range-coder library with Python bindings) rather than CompressAI's C++
rANS: no CompressAI / torchvision runtime dependency, maintained wheels, and a documented, exactly
invertible quantisation of the probabilities we pass in. We only pass ``int_pmf / 2**16`` as float64
(exact), with ``perfect=False``, so both sides build identical fixed-point models.

Escape scheme (like CompressAI's overflow coding, but inside the same range coder): a value outside a
table's range is coded as the table's escape symbol; after all table-coded symbols of a block, every escaped
value is coded, in order, as a zigzag varint: 8-bit chunks (7 data bits + continuation) with a uniform model.
"""

from __future__ import annotations

import numpy as np

import constriction

from nicbeam.entropy.tables import PMF_TOTAL

_UNIFORM256 = constriction.stream.model.Uniform(256)


class TableSet:
    """A (R, W) padded int table with per-row length (including escape) and value offset."""

    def __init__(self, pmf: np.ndarray, length: np.ndarray, offset: np.ndarray) -> None:
        self.pmf = np.asarray(pmf, dtype=np.int64)
        self.length = np.asarray(length, dtype=np.int64)
        self.offset = np.asarray(offset, dtype=np.int64)
        if (self.pmf.sum(axis=1) != PMF_TOTAL).any():
            raise ValueError("probability table rows must sum to 2**16")
        self._models: dict[int, object] = {}

    @classmethod
    def from_tensors(cls, tensors: dict, prefix: str) -> "TableSet":
        """The tables stored in a weights file as ``<prefix>.pmf``, ``<prefix>.length``, ``<prefix>.offset``."""
        return cls(*(tensors[f"{prefix}.{part}"].numpy() for part in ("pmf", "length", "offset")))

    def __len__(self) -> int:
        return len(self.length)

    def model(self, row: int):
        m = self._models.get(row)
        if m is None:
            probs = self.pmf[row, : self.length[row]].astype(np.float64) / PMF_TOTAL  # exact dyadic values
            m = constriction.stream.model.Categorical(probs, perfect=False)
            self._models[row] = m
        return m


class Encoder:
    def __init__(self) -> None:
        self.coder = constriction.stream.queue.RangeEncoder()
        self.escapes: list[int] = []

    def encode(self, values: np.ndarray, tables: TableSet, row: int) -> None:
        """Code integer ``values`` (1-D) with table ``row``; out-of-range values escape."""
        if values.size == 0:
            return
        n = int(tables.length[row]) - 1
        sym = values.astype(np.int64) - tables.offset[row]
        out = (sym < 0) | (sym >= n)
        if out.any():
            self.escapes.extend(int(v) for v in values[out])
            sym = np.where(out, n, sym)
        self.coder.encode(sym.astype(np.int32), tables.model(row))

    def flush_escapes(self) -> None:
        """Code the escaped values collected since the last flush (call at the end of each block)."""
        chunks = []
        for v in self.escapes:
            u = (v << 1) if v >= 0 else ((-v << 1) - 1)
            while True:
                byte = u & 0x7F
                u >>= 7
                chunks.append(byte | (0x80 if u else 0))
                if not u:
                    break
        if chunks:
            self.coder.encode(np.asarray(chunks, dtype=np.int32), _UNIFORM256)
        self.escapes = []

    def finish(self) -> bytes:
        self.flush_escapes()
        return self.coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise ValueError("range-coded block length is not a multiple of 4")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self.coder = constriction.stream.queue.RangeDecoder(words)
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []

    def decode(self, count: int, tables: TableSet, row: int) -> np.ndarray:
        """Decode ``count`` values coded with table ``row``; escaped positions are filled by flush_escapes."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        n = int(tables.length[row]) - 1
        sym = np.asarray(self.coder.decode(tables.model(row), count), dtype=np.int64)
        values = sym + tables.offset[row]
        esc = np.nonzero(sym == n)[0]
        if esc.size:
            self.pending.append((values, esc))
        return values

    def flush_escapes(self) -> None:
        """Read the escaped values of this block and write them into the arrays ``decode`` returned."""
        for values, positions in self.pending:
            for pos in positions:
                u, shift = 0, 0
                while True:
                    byte = int(self.coder.decode(_UNIFORM256))
                    u |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                    if shift > 63:
                        raise ValueError("escape value too long")
                values[pos] = (u >> 1) if not u & 1 else -((u + 1) >> 1)
        self.pending = []
