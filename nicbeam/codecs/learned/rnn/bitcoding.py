"""Bits of one tile and one iteration to bytes and back: raw packed bits (the no-entropy-coding baseline) or
range coding (constriction) driven by the integer context model of :mod:`.context`.

A tile's iteration holds ``bits x h x w`` binary codes, coded channel by channel, each channel in raster
order. Every probability handed to the range coder is ``f / 2**16`` for an integer frequency ``f`` from the
context model's stored table (exact in float64), so encoder and decoder build identical coder models.
"""

from __future__ import annotations

import numpy as np
import constriction

from nicbeam.codecs.errors import PayloadError
from nicbeam.codecs.learned.rnn.context import IntegerBitContext
from nicbeam.entropy.tables import PMF_TOTAL

_BINARY = constriction.stream.model.Categorical(perfect=False)


def _probabilities(freq_one: np.ndarray) -> np.ndarray:
    """(N, 2) float64 [P(0), P(1)] from integer frequencies of a 1 (exact dyadic values)."""
    f = freq_one.reshape(-1).astype(np.float64)
    return np.stack([(PMF_TOTAL - f) / PMF_TOTAL, f / PMF_TOTAL], axis=1)


def _codes(bits: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """+-1 int8 codes of uint8 bits; zeros ("unknown") when there are none (before the first iteration)."""
    return np.zeros(shape, dtype=np.int8) if bits is None else bits.astype(np.int8) * 2 - 1


def encode_raw(bits: np.ndarray) -> bytes:
    """uint8 bits (C, h, w) -> packed bytes, most significant bit first, zero-padded to a byte."""
    return np.packbits(bits.reshape(-1)).tobytes()


def decode_raw(blob: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    count = int(np.prod(shape))
    if len(blob) != -(-count // 8):
        raise PayloadError(f"raw iteration has {len(blob)} bytes, {-(-count // 8)} expected for {count} bits")
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8))
    if bits[count:].any():
        raise PayloadError("raw iteration has nonzero padding bits")
    return bits[:count].reshape(shape)


def encode_context(ctx: IntegerBitContext, bits: np.ndarray, prev: np.ndarray | None, iteration: int) -> bytes:
    """Range-code iteration ``iteration`` (0-based) of a tile given the previous iteration's bits."""
    logits = ctx.prev_logits(_codes(prev, bits.shape), iteration) + ctx.cur_logits(_codes(bits, bits.shape))
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(bits.reshape(-1).astype(np.int32), _BINARY, _probabilities(ctx.frequencies(logits)))
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_context(ctx: IntegerBitContext, blob: bytes, prev: np.ndarray | None, iteration: int,
                   shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`encode_context`: 32 steps, one per channel, each vectorised over the positions;
    the result is re-encoded and must give ``blob`` back."""
    if len(blob) % 4 or not blob:
        raise PayloadError(f"range-coded iteration of {len(blob)} bytes is not a whole number of 32-bit words")
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(blob, dtype="<u4").astype(np.uint32))
    base = ctx.prev_logits(_codes(prev, shape), iteration)
    codes = np.zeros(shape, dtype=np.int8)
    bits = np.zeros(shape, dtype=np.uint8)
    for c in range(shape[0]):
        logit = base[c] + ctx.cur_logits(codes, c)
        symbols = np.asarray(decoder.decode(_BINARY, _probabilities(ctx.frequencies(logit))), dtype=np.uint8)
        bits[c] = symbols.reshape(shape[1:])
        codes[c] = bits[c].astype(np.int8) * 2 - 1
    # canonical-form check: a blob that is not exactly what the encoder writes for these bits (trailing or
    # altered words that happen to decode) is refused instead of yielding a silently different image
    if encode_context(ctx, bits, prev, iteration) != bytes(blob):
        raise PayloadError("range-coded iteration is not the encoding of the bits it decodes to")
    return bits
