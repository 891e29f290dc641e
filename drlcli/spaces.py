"""The spaces users bring (issue #19): observation encodings and action masks.

Observations. Algorithms see one float32 vector (or an image) per env. A ``Discrete(n)``
observation becomes its one-hot vector (n,); ``MultiDiscrete(nvec)`` the concatenated one-hot
vectors of its entries (sum(nvec),); ``MultiBinary(n)`` its bits as floats (n,); a ``Dict``
(keys in sorted order, gymnasium's own order) or ``Tuple`` of any of these and Box vectors the
concatenation of their encodings. Box vectors are flattened as they are, and so are images
inside a Dict / Tuple (their raw pixel values; :class:`EncodedBox` records where, so the
networks give each image a Nature-CNN and the rest an MLP; normalization skips those columns).
This is the
preprocessing step :class:`drlcli.envs.VecEnv` applies before normalization, so every
algorithm that takes vector observations takes these spaces too; :func:`encoded_space` is the
Box it then sees (``EnvInfo.observation_space``).

Action masks (sb3-contrib's MaskablePPO convention). An env may say which actions are legal
through the ``action_mask`` key of its ``info`` dicts or an ``action_masks()`` method: a bool
vector of ``n`` entries for ``Discrete(n)``, of ``sum(nvec)`` entries (the legal values of
each entry, concatenated) for ``MultiDiscrete(nvec)``. Masked logits are set to
:data:`MASKED_LOGIT`, a large finite negative number: the masked action gets probability 0
(``exp`` underflows to exactly 0), and entropies and KLs stay finite (0 * finite = 0, where
-inf would give 0 * -inf = NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from drlcli.errors import DrlError

# Spaces the vector encoding handles as a whole observation or as a part of a Dict / Tuple.
LEAF_SPACES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)

# The logit of a masked action: exp(-1e8 - logsumexp) is exactly 0 in float32 and float64,
# and -1e8 minus a logit of realistic size is still exactly representable enough to stay
# finite (float32 spacing at 1e8 is 8), so no inf - inf or 0 * inf ever appears.
MASKED_LOGIT = -1e8


def _is_image_box(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


# The Nature-CNN's convolutions (8x8 stride 4, 4x4 stride 2, 3x3 stride 1) need 36 pixels.
MIN_IMAGE_SIDE = 36


def image_layout(shape: Sequence[int]) -> tuple[int, int, int, bool]:
    """(channels, height, width, channels_last) of a 3-D image ``shape``: the channel axis is
    the first or the last, whichever is smaller (a tie: the first, torch's layout), so
    (4, 84, 84) frame stacks and (84, 84, 3) colour or (84, 84, 6) two-frame colour images are
    all read right."""
    a, b, c = (int(n) for n in shape)
    if c < a:
        return c, a, b, True
    return a, b, c, False


def image_problem(shape: Sequence[int], what: str) -> str | None:
    """None when the Nature-CNN can take an image of ``shape``, else one sentence naming it
    (``what``: how to call it, e.g. "the image observation")."""
    channels, height, width, last = image_layout(shape)
    if min(height, width) >= MIN_IMAGE_SIDE:
        return None
    layout = "(H, W, C)" if last else "(C, H, W)"
    return (
        f"{what} {tuple(shape)}, read as {layout}: {height} x {width} pixels in {channels} "
        f"channels, is smaller than the {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels the "
        "Nature-CNN needs (resize it, e.g. env.wrappers with gymnasium's ResizeObservation, or "
        "flatten a 3-D array that is not an image with FlattenObservation)"
    )


@dataclass(frozen=True)
class ImagePart:
    """An image inside a Dict / Tuple observation: its pixel values occupy the encoded vector's
    columns ``start : start + size``, C-order of the image's own ``shape`` ((H, W, C) or
    (C, H, W)). ``key``: the Dict key or Tuple index, for messages."""

    key: str
    shape: tuple[int, ...]
    start: int
    size: int
    uint8: bool = True  # the env's pixels are uint8 (storage may keep them so)


class EncodedBox(gym.spaces.Box):
    """The Box of a Dict / Tuple encoding that holds images (``parts``, in column order): the
    networks read each image's columns back as an image for a Nature-CNN and the remaining
    columns as a vector (``drlcli.encoders.CombinedEncoder``)."""

    def __init__(self, low: np.ndarray, high: np.ndarray, parts: tuple[ImagePart, ...]):
        super().__init__(low, high, (len(low),), np.float32)
        self.parts = parts


def image_parts(space: gym.Space) -> tuple[ImagePart, ...]:
    """The images inside an encoded observation space (an :class:`EncodedBox`), else ()."""
    return tuple(getattr(space, "parts", ()))


def _collect_parts(space: gym.Space, offset: int, prefix: str) -> list[ImagePart]:
    out: list[ImagePart] = []
    subs: list[tuple[str, gym.Space]] = []
    if isinstance(space, gym.spaces.Dict):
        subs = list(space.spaces.items())
    elif isinstance(space, gym.spaces.Tuple):
        subs = [(str(i), s) for i, s in enumerate(space.spaces)]
    for key, sub in subs:
        if _is_image_box(sub):
            shape = tuple(sub.shape or ())
            pixels = np.dtype(sub.dtype) == np.uint8
            out.append(ImagePart(prefix + key, shape, offset, int(np.prod(shape)), pixels))
        else:
            out.extend(_collect_parts(sub, offset, f"{prefix}{key}."))
        offset += encoded_dim(sub)
    return out


def raw_columns(space: gym.Space) -> np.ndarray:
    """Columns of ``space``'s encoding that observation normalization leaves alone (issue #19:
    it applies to vector keys only): one-hot, bits and image pixels; every column of a Box
    vector is normalized. Empty for a Box space (it is normalized as a whole)."""
    out: list[np.ndarray] = []

    def walk(sub: gym.Space, offset: int) -> None:
        if isinstance(sub, gym.spaces.Dict | gym.spaces.Tuple):
            parts = sub.spaces.values() if isinstance(sub, gym.spaces.Dict) else sub.spaces
            for part in parts:
                walk(part, offset)
                offset += encoded_dim(part)
        elif not isinstance(sub, gym.spaces.Box) or _is_image_box(sub):
            out.append(np.arange(offset, offset + encoded_dim(sub)))

    if needs_encoding(space):
        walk(space, 0)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def has_images(space: gym.Space) -> bool:
    """Whether observations of the env's own ``space`` hold images: a 3-D Box, or one inside a
    Dict / Tuple (at any depth)."""
    if _is_image_box(space):
        return True
    if isinstance(space, gym.spaces.Dict):
        return any(has_images(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return any(has_images(s) for s in space.spaces)
    return False


def needs_encoding(space: gym.Space) -> bool:
    """Whether observations of ``space`` go through :func:`encode` (everything but a Box)."""
    return not isinstance(space, gym.spaces.Box)


def encoded_dim(space: gym.Space) -> int:
    """Length of the float vector that encodes one observation of ``space``.

    Raises DrlError for a space the encoding does not cover (see :func:`observation_problem`).
    """
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.asarray(space.nvec).sum())
    if isinstance(space, gym.spaces.MultiBinary):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Dict):
        return sum(encoded_dim(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return sum(encoded_dim(s) for s in space.spaces)
    raise DrlError(observation_problem(space) or f"Cannot encode the space {space}.")


def observation_problem(space: gym.Space) -> str | None:
    """None when drlcli can encode observations of ``space`` as vectors, else one sentence
    naming what it cannot (an image inside a Dict / Tuple, a Text or Graph space, ...)."""
    if isinstance(space, LEAF_SPACES):
        if isinstance(space, gym.spaces.MultiDiscrete) and np.asarray(space.nvec).ndim != 1:
            return f"a MultiDiscrete observation space must be 1-D, got nvec shape {space.shape}"
        if _is_image_box(space):
            return image_problem(space.shape or (), "the image observation")
        return None
    parts: list[tuple[str, gym.Space]]
    if isinstance(space, gym.spaces.Dict):
        parts = list(space.spaces.items())
    elif isinstance(space, gym.spaces.Tuple):
        parts = [(str(i), s) for i, s in enumerate(space.spaces)]
    else:
        return (
            f"the observation space {type(space).__name__} is not supported (drlcli observes "
            "Box vectors or images, Discrete, MultiDiscrete and MultiBinary spaces, and Dict or "
            "Tuple spaces of vector parts)"
        )
    for key, sub in parts:
        if _is_image_box(sub):
            problem = image_problem(sub.shape or (), f"the image part '{key}'")
            if problem is not None:
                return problem
            continue
        problem = observation_problem(sub)
        if problem is not None:
            return f"in part '{key}': {problem}"
    return None


def encoded_space(space: gym.Space) -> gym.Space:
    """The observation space algorithms see for an env observing ``space``: ``space`` itself
    for a Box (vectors and images), else a float32 ``Box(low, high, (encoded_dim,))``. Raises
    DrlError for a space :func:`observation_problem` refuses."""
    if isinstance(space, gym.spaces.Box):
        return space
    problem = observation_problem(space)
    if problem is not None:
        raise DrlError(f"Cannot observe {space}: {problem}.")
    low, high = _bounds(space)
    parts = tuple(_collect_parts(space, 0, ""))
    if parts:
        return EncodedBox(low, high, parts)
    return gym.spaces.Box(low, high, (len(low),), np.float32)


def _bounds(space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(space, gym.spaces.Box):
        return space.low.reshape(-1).astype(np.float32), space.high.reshape(-1).astype(np.float32)
    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
        subs = space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces
        pairs = [_bounds(s) for s in subs]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    d = encoded_dim(space)
    return np.zeros(d, np.float32), np.ones(d, np.float32)


def encode(space: gym.Space, batch: Any) -> np.ndarray:
    """Encode a batch of ``B`` observations of ``space`` (as a gymnasium vector env stacks
    them: an array (B, *shape), a dict of such arrays for a Dict, a tuple for a Tuple) into a
    float32 array (B, encoded_dim). A Box batch comes back as float32 (B, *shape), unflattened.

    Discrete values are taken relative to ``space.start``; a value outside the space raises
    DrlError (a one-hot of an out-of-range index would silently be wrong).
    """
    if isinstance(space, gym.spaces.Box):
        return np.asarray(batch, dtype=np.float32)
    return _encode(space, batch)


def _encode(space: gym.Space, batch: Any) -> np.ndarray:
    if isinstance(space, gym.spaces.Box):
        arr = np.asarray(batch, dtype=np.float32)
        return arr.reshape(arr.shape[0], -1)
    if isinstance(space, gym.spaces.Discrete):
        idx = np.asarray(batch, dtype=np.int64).reshape(-1) - int(space.start)
        return _one_hot(idx, int(space.n), space)
    if isinstance(space, gym.spaces.MultiDiscrete):
        vals = np.asarray(batch, dtype=np.int64).reshape(-1, len(space.nvec))
        vals = vals - np.asarray(space.start, dtype=np.int64)
        return np.concatenate(
            [_one_hot(vals[:, j], int(n), space) for j, n in enumerate(space.nvec)], axis=1
        )
    if isinstance(space, gym.spaces.MultiBinary):
        arr = np.asarray(batch, dtype=np.float32)
        return arr.reshape(arr.shape[0], -1)
    if isinstance(space, gym.spaces.Dict):
        return np.concatenate([_encode(s, batch[k]) for k, s in space.spaces.items()], axis=1)
    if isinstance(space, gym.spaces.Tuple):
        return np.concatenate([_encode(s, batch[i]) for i, s in enumerate(space.spaces)], axis=1)
    raise DrlError(f"Cannot encode observations of {space}.")


def _one_hot(idx: np.ndarray, n: int, space: gym.Space) -> np.ndarray:
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise DrlError(f"An observation {idx.tolist()} lies outside its space {space}.")
    out = np.zeros((len(idx), n), dtype=np.float32)
    out[np.arange(len(idx)), idx] = 1.0
    return out


def encode_one(space: gym.Space, obs: Any) -> np.ndarray:
    """Encode a single observation (e.g. gymnasium's ``final_obs`` of one env): (encoded_dim,)
    float32, or the Box observation itself as float32."""
    if isinstance(space, gym.spaces.Box):
        return np.asarray(obs, dtype=np.float32)
    if isinstance(space, gym.spaces.Dict):
        batch: Any = {k: np.asarray(obs[k])[None] for k in space.spaces}
    elif isinstance(space, gym.spaces.Tuple):
        batch = tuple(np.asarray(o)[None] for o in obs)
    else:
        batch = np.asarray(obs)[None]
    return _encode(space, batch)[0]


# --- action masks -------------------------------------------------------------------------------
def mask_dim(action_space: gym.Space) -> int:
    """Entries of an action mask for ``action_space``: n for Discrete(n), sum(nvec) for
    MultiDiscrete(nvec). Raises DrlError for spaces without masks."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return int(np.asarray(action_space.nvec).sum())
    raise DrlError(
        f"Action masks are supported for Discrete and MultiDiscrete action spaces, not "
        f"{action_space}."
    )


def check_masks(masks: np.ndarray, action_space: gym.Space, source: str) -> np.ndarray:
    """``masks`` (B, mask_dim) as bool, after checking its shape and that every row (every
    MultiDiscrete entry) leaves at least one legal action; DrlError naming ``source``
    otherwise."""
    masks = np.asarray(masks).astype(bool, copy=False)
    dim = mask_dim(action_space)
    if masks.ndim != 2 or masks.shape[1] != dim:
        raise DrlError(
            f"The env's action mask ({source}) has shape {masks.shape[1:]}; {action_space} "
            f"needs {dim} entries per env (one per action; for MultiDiscrete the legal values "
            "of each entry, concatenated)."
        )
    sizes = (
        [dim] if isinstance(action_space, gym.spaces.Discrete) else list(action_space.nvec)  # type: ignore[attr-defined]
    )
    start = 0
    for n in sizes:
        empty = ~masks[:, start : start + int(n)].any(axis=1)
        if empty.any():
            raise DrlError(
                f"The env's action mask ({source}) leaves env {int(np.flatnonzero(empty)[0])} "
                "no legal action; an env must allow at least one action in every state."
            )
        start += int(n)
    return masks


def mask_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``logits`` (B, k) with the entries where ``mask`` (B, k, bool) is False set to
    :data:`MASKED_LOGIT`; ``logits`` itself when ``mask`` is None. Masked entries carry no
    gradient."""
    if mask is None:
        return logits
    return logits.masked_fill(~mask, MASKED_LOGIT)
