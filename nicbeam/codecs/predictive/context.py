"""The causal context of the MLP-DPCM predictor, shared by training (torch) and coding (numpy).

Pixels are coded in raster order inside a tile, channels in the order G, R, B (``CHANNEL_ORDER``). The context
of channel ``c`` at (y, x) is the 12 pixels of ``OFFSETS`` (two rows above, five wide, and two to the left), all
three channels, each centred on that channel's reference value ``ref_k(y, x)`` (the LOCO-I median predictor
MED(N, W, N + W - NW), or W / N / 128 where the tile border cuts the neighbours off), plus the already coded
channels of the pixel itself (centred the same way) and the reference of channel ``c``. Neighbours outside
the tile read as their reference (feature 0). Every value is an integer, so training and the integer coder
see identical inputs.
"""

from __future__ import annotations

#: causal neighbourhood (dy, dx): rows y-2 and y-1 from x-2 to x+2, then x-2 and x-1 of row y
OFFSETS: tuple[tuple[int, int], ...] = tuple((dy, dx) for dy in (-2, -1) for dx in range(-2, 3)) + ((0, -2), (0, -1))
#: how far the window reaches up, left and right (the wavefront slope is REACH_RIGHT + 1 columns per row)
REACH_UP, REACH_LEFT, REACH_RIGHT = 2, 2, 2
#: coding order of the RGB channels: green first (it predicts the others best)
CHANNEL_ORDER = (1, 0, 2)
#: features per channel model: 12 neighbours x 3 channels, 2 current-pixel channels (masked), own reference
NUM_NEIGHBOUR_FEATURES = len(OFFSETS) * 3
NUM_FEATURES = NUM_NEIGHBOUR_FEATURES + 2 + 1
