"""The combined encoder for Dict / Tuple observations that hold images (issue #19).

The env side encodes such an observation into one float32 vector (``drlcli.spaces``): each
image's raw pixel values in its own columns, everything else (Box vectors, one-hot Discrete,
...) in the rest. :class:`CombinedEncoder` reads it back: a Nature-CNN per image part (pixels
scaled to [0, 1] inside, as for whole-image observations), an MLP over the remaining columns,
features concatenated -- SB3's CombinedExtractor layout, with an MLP where SB3 flattens.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from drlcli.networks import NatureCNN, mlp
from drlcli.spaces import image_parts


class CombinedEncoder(nn.Module):
    """(B, D) encoded observations of ``space`` (an ``EncodedBox`` with image parts) ->
    (B, out_features) features: 512 per image (Nature-CNN) plus the MLP's last hidden width
    over the non-image columns (none when there are no such columns). Raises ValueError for a
    space without image parts (use a plain MLP there)."""

    vector_columns: torch.Tensor  # (D_vec,) int64: the non-image columns, in order
    out_features: int

    def __init__(
        self,
        space: gym.Space,
        hidden_sizes: Sequence[int],
        activation: str = "tanh",
        ortho: bool = True,
    ):
        super().__init__()
        parts = image_parts(space)
        if not parts:
            raise ValueError(f"{space} holds no images: a CombinedEncoder needs image parts")
        dim = int(np.prod(space.shape or ()))
        self._slices = [(p.start, p.size, p.shape) for p in parts]
        self.cnns = nn.ModuleList(
            NatureCNN(gym.spaces.Box(0, 255, p.shape, np.uint8), ortho=ortho) for p in parts
        )
        keep = np.ones(dim, dtype=bool)
        for p in parts:
            keep[p.start : p.start + p.size] = False
        self.register_buffer("vector_columns", torch.as_tensor(np.flatnonzero(keep)))
        self.mlp = (
            mlp(int(keep.sum()), hidden_sizes, None, activation, ortho=ortho)
            if keep.any()
            else None
        )
        width = self.mlp.out_features if self.mlp is not None else 0
        self.out_features = 512 * len(parts) + width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        feats = [
            cnn(x[:, start : start + size].reshape(b, *shape))
            for cnn, (start, size, shape) in zip(self.cnns, self._slices)
        ]
        if self.mlp is not None:
            feats.append(self.mlp(x.index_select(1, self.vector_columns)))
        return torch.cat(feats, dim=1)
