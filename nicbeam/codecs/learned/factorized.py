"""``bmshj2017-factorized``: Balle et al. 2017 GDN autoencoder with a factorized (per-channel) prior.

Each tile's blob: the latent symbols round(y) channel by channel (raster order inside a channel), each
channel with its own integer table from the weights file (one table per channel, or per channel and quality
for models trained with ``prior="per-quality"``), then escaped values (see
:mod:`nicbeam.entropy.coder`). Nothing computed in floating point influences the symbol probabilities.
"""

from __future__ import annotations

import numpy as np
import torch

from nicbeam.codecs.learned.base import LearnedCodec
from nicbeam.codecs.learned.latents import TileLatents
from nicbeam.entropy.coder import Decoder, Encoder, TableSet


class FactorizedCodec(LearnedCodec):
    name = "bmshj2017-factorized"
    description = "learned: Balle 2017 factorized-prior autoencoder (GDN), gain-unit variable rate"
    weights_name = "bmshj2017-factorized"
    downsampling = 16

    def _setup(self, bundle) -> None:
        t = bundle.tensors
        bundle.extras["y_tables"] = TableSet.from_tensors(t, "tables.y")

    def _encode_tiles(self, x: torch.Tensor, quality: torch.Tensor,
                      latents_out: list[TileLatents] | None = None) -> list[bytes]:
        tables = self.bundle.extras["y_tables"]
        y = self.model.analysis(x, quality)
        if self.params["refine"]:
            y = self._refine(y, x, quality, torch.zeros_like(y), lambda y_tilde: -torch.log2(
                self.model.y_likelihood(y_tilde, quality)).sum(dim=(1, 2, 3)))
        sym = torch.round(y).to(torch.int64).cpu().numpy()
        blobs = []
        for s, q in zip(sym, quality.tolist()):
            enc = Encoder()
            first = self._first_row(q)
            for c in range(s.shape[0]):
                enc.encode(s[c].ravel(), tables, first + c)
            blobs.append(enc.finish())
            if latents_out is not None:  # y_hat is the coded symbols themselves
                latents_out.append(TileLatents(s.astype(np.float32), s))
        return blobs

    def _first_row(self, quality_index: int) -> int:
        """Table row of channel 0 at this quality: tables are per channel, or per (quality, channel)."""
        return quality_index * self.model.M if self.model.prior == "per-quality" else 0

    def _decode_tile_latents(self, blob: bytes, hp: int, wp: int, quality_index: int) -> TileLatents:
        tables = self.bundle.extras["y_tables"]
        h, w = hp // 16, wp // 16
        dec = Decoder(blob)
        first = self._first_row(quality_index)
        chans = [dec.decode(h * w, tables, first + c) for c in range(self.model.M)]
        dec.flush_escapes()
        symbols = np.stack(chans).reshape(-1, h, w)
        return TileLatents(symbols.astype(np.float32), symbols)
