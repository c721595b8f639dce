"""Integer tables, the constriction range coder with escapes, and the integer network's exactness bound."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("constriction")
torch = pytest.importorskip("torch")

from nicbeam.entropy.coder import Decoder, Encoder, TableSet  # noqa: E402
from nicbeam.entropy.integer_net import EXACT_LIMIT, IntegerHyperSynthesis, accumulator_bound  # noqa: E402
from nicbeam.entropy.tables import PMF_TOTAL, gaussian_tables, quantize_pmf  # noqa: E402


def test_quantized_pmf_sums_exactly_and_keeps_every_symbol():
    freq = quantize_pmf(np.array([0.5, 0.3, 1e-12, 0.2 - 1e-6]), 1e-6)
    assert freq.sum() == PMF_TOTAL and freq.min() >= 1 and len(freq) == 5


def test_round_trip_with_escapes_across_blocks():
    tables = TableSet(**gaussian_tables(np.array([0.11, 0.7, 3.0, 40.0])))
    rng = np.random.default_rng(0)
    blocks = []
    for row, scale in enumerate([0.11, 0.7, 3.0, 40.0]):
        values = np.round(rng.normal(0, scale, 500)).astype(np.int64)
        values[::97] = rng.integers(-(10**9), 10**9, values[::97].size)  # far outside: escaped
        blocks.append((row, values))
    enc = Encoder()
    enc.encode(blocks[0][1], tables, 0)
    enc.flush_escapes()  # a mid-stream flush, as the hyperprior does after z
    for row, values in blocks[1:]:
        enc.encode(values, tables, row)
    data = enc.finish()
    dec = Decoder(data)
    first = dec.decode(500, tables, 0)
    dec.flush_escapes()
    np.testing.assert_array_equal(first, blocks[0][1])
    rest = [dec.decode(500, tables, row) for row, _ in blocks[1:]]
    dec.flush_escapes()
    for got, (_, want) in zip(rest, blocks[1:]):
        np.testing.assert_array_equal(got, want)


def test_integer_network_bound_is_checked():
    layer = {"weight": torch.full((4, 4, 3, 3), 8191.0), "bias": torch.zeros(4, dtype=torch.int64), "transposed": 0,
             "stride": 1, "padding": 1, "output_padding": 0, "shift": 0, "acc_frac": 0}
    net = IntegerHyperSynthesis([layer])
    bound = accumulator_bound(net.w0, net.b0, 2**15 - 1, False, 1)
    assert bound == 4 * 9 * 8191 * (2**15 - 1) < EXACT_LIMIT
    huge = dict(layer, bias=torch.full((4,), 2**53 - 1000, dtype=torch.int64))
    with pytest.raises(AssertionError, match="2\\*\\*53"):
        IntegerHyperSynthesis([huge])
