"""Context-adaptive multi-symbol models driving constriction's range coder (used by the dct and dwt codecs).

Each context holds integer symbol counts. A *group* of symbols (whose contexts depend only on earlier groups)
is coded in one constriction call with one probability row per symbol (``Categorical`` as a model family);
the counts are then updated with the group's symbols. Encoder and decoder run the same integer updates and
the same float64 division, so both hand constriction bit-identical probabilities. Groups keep Python out of
the per-symbol loop while the models still adapt many thousand times per image.

Magnitudes are coded in three parts: a *level* ``min(|q|, 3)`` with rich contexts (what the neighbours'
contexts see), a *remainder* ``|q| - 3`` with coarse contexts and an Exp-Golomb escape, and a bypass sign.
"""

from __future__ import annotations

import numpy as np

import constriction

#: Levels are ``min(|q|, LEVEL_CAP)``: 0, 1, 2 and "3 or more" (which is followed by a remainder).
LEVEL_CAP = 3
#: Remainders 0..REMAINDER_DIRECT-1 are coded directly; larger ones as an escape plus Exp-Golomb.
REMAINDER_DIRECT = 15
#: Largest Exp-Golomb exponent: remainders up to 2**MAX_EXPONENT; bounds what garbage can decode to.
MAX_EXPONENT = 24

_FAMILY = constriction.stream.model.Categorical(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()


class AdaptiveModels:
    """Integer frequency counts for ``n_contexts`` contexts over ``alphabet`` symbols, with periodic halving."""

    def __init__(self, n_contexts: int, alphabet: int, initial: np.ndarray | None = None,
                 increment: int = 24, limit: int = 1 << 13) -> None:
        if initial is None:
            initial = np.ones(alphabet, dtype=np.int64)
        init = np.broadcast_to(np.asarray(initial, dtype=np.int64), (n_contexts, alphabet))
        if (init < 1).any():
            raise ValueError("initial counts must be >= 1 so that every symbol stays codable")
        self.counts = np.array(init, dtype=np.int64)
        self.totals = self.counts.sum(axis=1)
        self.alphabet = alphabet
        self.increment = increment
        self.limit = limit

    def probabilities(self, contexts: np.ndarray) -> np.ndarray:
        """One float64 probability row per symbol context (identical on encoder and decoder)."""
        return self.counts[contexts] / self.totals[contexts, None].astype(np.float64)

    def update(self, contexts: np.ndarray, symbols: np.ndarray) -> None:
        """Add the group's symbols to their contexts' counts; halve contexts whose total passed the limit."""
        contexts = contexts.astype(np.int64, copy=False)
        np.add.at(self.counts.reshape(-1), contexts * self.alphabet + symbols, self.increment)
        np.add.at(self.totals, contexts, self.increment)
        hot = contexts[self.totals[contexts] > self.limit]
        if hot.size:
            over = np.unique(hot)
            self.counts[over] = (self.counts[over] + 1) >> 1
            self.totals[over] = self.counts[over].sum(axis=1)


class AdaptiveEncoder:
    """A constriction range encoder coding groups of symbols with adaptive models, uniform values and signs."""

    def __init__(self) -> None:
        self.coder = constriction.stream.queue.RangeEncoder()

    def symbols(self, symbols: np.ndarray, models: AdaptiveModels, contexts: np.ndarray) -> None:
        """Code one group of symbols, each with its context's current model, then adapt the models."""
        if symbols.size == 0:
            return
        symbols = symbols.astype(np.int32, copy=False).ravel()
        contexts = contexts.ravel()
        self.coder.encode(symbols, _FAMILY, models.probabilities(contexts))
        models.update(contexts, symbols)

    def uniform(self, values: np.ndarray, sizes: np.ndarray | int) -> None:
        """Code ``0 <= values < sizes`` with a flat distribution (sizes >= 2)."""
        if values.size == 0:
            return
        sizes = np.broadcast_to(np.asarray(sizes, dtype=np.int32), values.shape).ravel()
        self.coder.encode(values.astype(np.int32).ravel(), _UNIFORM, np.ascontiguousarray(sizes))

    def levels(self, magnitudes: np.ndarray, models: AdaptiveModels, contexts: np.ndarray) -> None:
        """Code ``min(|q|, LEVEL_CAP)``; the part above the cap goes through :meth:`remainders`."""
        self.symbols(np.minimum(magnitudes, LEVEL_CAP), models, contexts)

    def remainders(self, magnitudes: np.ndarray, models: AdaptiveModels, contexts: np.ndarray) -> None:
        """Code ``|q| - LEVEL_CAP`` of magnitudes at the cap: direct symbols, escape + Exp-Golomb beyond."""
        rem = magnitudes.astype(np.int64).ravel() - LEVEL_CAP
        self.symbols(np.minimum(rem, REMAINDER_DIRECT), models, contexts)
        big = rem[rem >= REMAINDER_DIRECT] - REMAINDER_DIRECT + 1  # >= 1
        if big.size:
            exponent = np.floor(np.log2(big)).astype(np.int64)
            exponent += (big >= (np.int64(2) << exponent)).astype(np.int64)  # guard float rounding
            exponent -= (big < (np.int64(1) << exponent)).astype(np.int64)
            if exponent.max() > MAX_EXPONENT:
                raise ValueError("coefficient magnitude too large for the remainder code")
            self.uniform(exponent, MAX_EXPONENT + 1)
            has_bits = exponent > 0
            self.uniform(big[has_bits] - (np.int64(1) << exponent[has_bits]), np.int64(1) << exponent[has_bits])

    def signs(self, values: np.ndarray) -> None:
        """Code the signs of the non-zero ``values`` as bypass bits (1 = negative)."""
        nz = values[values != 0]
        self.uniform((nz < 0).astype(np.int32), 2)

    def finish(self) -> bytes:
        return self.coder.get_compressed().astype("<u4").tobytes()


class AdaptiveDecoder:
    """The inverse of :class:`AdaptiveEncoder`; every call's size comes from the caller, so garbage cannot loop."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise ValueError("range-coded payload length is not a multiple of 4")
        self.coder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))

    def symbols(self, models: AdaptiveModels, contexts: np.ndarray) -> np.ndarray:
        contexts = contexts.ravel()
        if contexts.size == 0:
            return np.zeros(0, dtype=np.int64)
        symbols = np.asarray(self.coder.decode(_FAMILY, models.probabilities(contexts)), dtype=np.int64)
        models.update(contexts, symbols)
        return symbols

    def uniform(self, sizes: np.ndarray | int, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        sizes = np.broadcast_to(np.asarray(sizes, dtype=np.int32), (count,))
        return np.asarray(self.coder.decode(_UNIFORM, np.ascontiguousarray(sizes)), dtype=np.int64)

    def levels(self, models: AdaptiveModels, contexts: np.ndarray) -> np.ndarray:
        return self.symbols(models, contexts)

    def remainders(self, models: AdaptiveModels, contexts: np.ndarray) -> np.ndarray:
        """Magnitudes (>= LEVEL_CAP) of the symbols whose level was at the cap."""
        rem = self.symbols(models, contexts)
        escaped = np.nonzero(rem == REMAINDER_DIRECT)[0]
        if escaped.size:
            exponent = self.uniform(MAX_EXPONENT + 1, escaped.size)
            big = np.int64(1) << exponent
            has_bits = exponent > 0
            big[has_bits] += self.uniform(big[has_bits], int(has_bits.sum()))
            rem[escaped] = big + REMAINDER_DIRECT - 1
        return rem + LEVEL_CAP

    def signs(self, magnitudes: np.ndarray) -> np.ndarray:
        """Signed values from non-negative ``magnitudes`` and the bypass sign bits of the non-zero ones."""
        values = magnitudes.astype(np.int64).copy()
        nz = np.nonzero(values.ravel())[0]
        negative = self.uniform(2, nz.size).astype(bool)
        flat = values.reshape(-1)
        flat[nz[negative]] *= -1
        return values
