"""Small input files made by the tests themselves: videos, images, MNIST, TFDS, corrupt files.

Video frames carry their own frame index as a 3x3 grid of black/white 8x8 blocks (9 bits), so a
test can read back exactly which frames a clip holds, through lossy H.264.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
from PIL import Image

from jepa_jax.data.video import write_video

BLOCK = 8


def index_frame(t: int, height: int = 32, width: int = 32, tint: int = 0) -> np.ndarray:
    """uint8 [H, W, 3] frame showing index t (bits in 8x8 blocks) on a grey level `tint`."""
    f = np.full((height, width, 3), tint, np.uint8)
    f[:, :, 1] = 60
    for b in range(9):
        if (t >> b) & 1:
            r, c = divmod(b, 3)
            f[r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = 255
    return f


def frame_index(frame: np.ndarray) -> int:
    """The index `index_frame` drew into an (uncropped) frame."""
    return sum(
        int(frame[(b // 3) * BLOCK + BLOCK // 2, (b % 3) * BLOCK + BLOCK // 2, 0] > 160) << b
        for b in range(9)
    )


def write_index_video(path: str, num_frames: int, height=32, width=32, tint=0, fps=30) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames = np.stack([index_frame(t, height, width, tint) for t in range(num_frames)])
    write_video(path, frames, fps=fps)


def write_truncated_video(path: str, source: str, keep: float = 0.3) -> None:
    """The first `keep` fraction of the bytes of `source` (an mp4 cut mid-file)."""
    with open(source, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])


def write_images(folder: str, classes: dict[str, int], size=(40, 48), seed=0) -> list[str]:
    """PNG files: folder/<class>/img<i>.png with a per-class colour; returns the paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for ci, (name, count) in enumerate(sorted(classes.items())):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i in range(count):
            img = rng.integers(0, 40, size=(*size, 3), dtype=np.uint8)
            img[..., ci % 3] += 200
            path = os.path.join(folder, name, f"img{i}.png")
            Image.fromarray(img).save(path)
            paths.append(path)
    return paths


def fake_mnist(n: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(digits uint8 [n, 28, 28]: a filled square of the class's size, classes [n])."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 10, size=n).astype(np.uint8)
    digits = np.zeros((n, 28, 28), np.uint8)
    for i, c in enumerate(classes):
        digits[i, 4 : 6 + 2 * c, 4 : 6 + 2 * c] = 255
    return digits, classes


def write_mnist_npz(path: str, n: int = 50) -> None:
    x, y = fake_mnist(n)
    xt, yt = fake_mnist(n // 2, seed=1)
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)


def write_mnist_idx(folder: str, n: int = 50) -> str:
    """train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz; returns the images path."""
    x, y = fake_mnist(n)
    os.makedirs(folder, exist_ok=True)
    images = os.path.join(folder, "train-images-idx3-ubyte.gz")
    with gzip.open(images, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in x.shape) + x.tobytes())
    with gzip.open(os.path.join(folder, "train-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + len(y).to_bytes(4, "big") + y.tobytes())
    return images
