"""Fixed sin-cos position embeddings (I-JEPA 2D, V-JEPA 3D), computed on the host in numpy.

They are constants, not parameters: they are rebuilt from the token grid at trace time, so any
grid size works without interpolating a stored table.
"""

from __future__ import annotations

import math

import numpy as np


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """Sin-cos embedding of scalar positions.

    Args:
      dim: even embedding width.
      positions: any shape of positions (grid units); flattened.

    Returns:
      float64 array [M, dim]: first half sin, second half cos, frequencies 1/10000^(2i/dim).
    """
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim: int, grid_hw: tuple[int, int], w_first: bool = False) -> np.ndarray:
    """2D table: [H*W, dim], tokens in row-major (h, w) order; half the channels encode h.

    The first half encodes the row (h) as in V-JEPA; `w_first` puts the column (w) first, as the
    I-JEPA code does (its meshgrid puts w first), which its released weights were trained with.
    """
    h, w = grid_hw
    gh, gw = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    first, second = (gw, gh) if w_first else (gh, gw)
    return np.concatenate([sincos_1d(dim // 2, first), sincos_1d(dim // 2, second)], axis=1)


def sincos_3d(dim: int, grid_thw: tuple[int, int, int], uniform_power: bool = True) -> np.ndarray:
    """V-JEPA 3D table: [T*H*W, dim], tokens in (t, h, w) raster order.

    With `uniform_power` each of t, h, w gets 2*ceil(dim/6) channels (concatenated [t, h, w] and
    truncated to `dim`); otherwise t gets dim/2 and h, w dim/4 each, as in the reference.
    """
    t, h, w = grid_thw
    gt, gh, gw = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    if uniform_power:
        dt = dh = dw = int(math.ceil(dim / 6) * 2)
    else:
        dt, dh, dw = dim // 2, dim // 4, dim // 4
    table = np.concatenate([sincos_1d(dt, gt), sincos_1d(dh, gh), sincos_1d(dw, gw)], axis=1)
    return table[:, :dim]


def sincos_table(
    dim: int, grid: tuple[int, ...], uniform_power: bool = True, w_first: bool = False
) -> np.ndarray:
    """Table for a 2D (h, w) or 3D (t, h, w) token grid, as float32 [prod(grid), dim].

    `w_first` (2D only) selects the I-JEPA channel order, see `sincos_2d`.
    """
    if len(grid) == 2:
        table = sincos_2d(dim, grid, w_first)
    elif len(grid) == 3:
        table = sincos_3d(dim, grid, uniform_power)
    else:
        raise ValueError(f"token grid must be (h, w) or (t, h, w), got {grid}")
    return table.astype(np.float32)
