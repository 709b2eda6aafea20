"""Moving MNIST generated on the fly from MNIST digits in a local file (`moving_mnist` source).

The standard construction (Srivastava et al., 2015, the generator behind the Toronto
`mnist_test_seq.npy`): `num_digits` = 2 digits of 28x28 on a 64x64 black canvas, each starting at
a uniform position with a uniform direction, moving 0.1 of the free range (3.6 px at 64x64) per
frame and bouncing off the edges; overlapping digits combine by maximum. Sequence i is a pure
function of (data.seed, split, i), so there is no fixed set of 10,000: `data.num_examples`
sequences per epoch.

The MNIST file (`config.data.path`) is either
  * `mnist.npz` with x_train, y_train (and optionally x_test, y_test), as Keras ships it:
    https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz ; or
  * an idx images file (`train-images-idx3-ubyte`, optionally .gz) with its labels file
    (`train-labels-idx1-ubyte[.gz]`) next to it, from https://yann.lecun.com/exdb/mnist/ or a
    mirror (e.g. https://ossci-datasets.s3.amazonaws.com/mnist/).
The 'test' split uses the test digits when the file has them, else the same digits with other
trajectories.

Items: {"pixels": uint8 [T, S, S, 3] (grey repeated to RGB), "labels": {
  "digits": int32 [num_digits] (classes), "positions": float32 [T, num_digits, 2] (digit
  centres (x, y) in [0, 1]), "velocity": float32 [num_digits, 2] (pixels per frame at the
  start), "digit_sum": int32 (sum of the classes, 0-18), "digit_0", "digit_1": int32 (each
  digit's class)}}. The scalar classes (digit_k, digit_sum) are what probes predict.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jepa_jax.errors import ConfigError

DIGIT_SIZE = 28
NUM_DIGITS = 2
# Class labels for probes (jepa_jax.data.labels): each digit's class, and their sum.
LABEL_CLASSES = {**{f"digit_{k}": 10 for k in range(NUM_DIGITS)}, "digit_sum": 9 * NUM_DIGITS + 1}
STEP_LENGTH = 0.1  # per frame, as a fraction of the free range (canvas - digit)
SPLIT_IDS = {"train": 0, "test": 1}


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError("not an idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"idx header says {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def _labels_path(images_path: str) -> str:
    head, name = os.path.split(images_path)
    for a, b in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1")):
        if a in name:
            return os.path.join(head, name.replace(a, b))
    raise ConfigError(
        f"config.data.path={images_path!r}: cannot tell the labels file of this idx images "
        f"file; expected a name like 'train-images-idx3-ubyte'"
    )


def load_mnist(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(digits uint8 [N, 28, 28], classes int32 [N]) of an MNIST file (module docstring)."""
    if not path:
        raise ConfigError("config.data.path is empty: expected a local MNIST file (.npz or idx)")
    if not os.path.isfile(path):
        raise ConfigError(
            f"config.data.path={path!r} does not exist: expected a local MNIST file (mnist.npz "
            f"or train-images-idx3-ubyte[.gz]; see jepa_jax/data/moving_mnist.py)"
        )
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                prefix = "test" if split == "test" and "x_test" in z else "train"
                images, labels = z[f"x_{prefix}"], z[f"y_{prefix}"]
        else:
            labels_path = _labels_path(path)
            if not os.path.isfile(labels_path):
                raise ConfigError(
                    f"the MNIST labels file {labels_path!r} for config.data.path={path!r} does "
                    f"not exist"
                )
            images, labels = _read_idx(path), _read_idx(labels_path)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise ConfigError(
            f"config.data.path={path!r} is not a readable MNIST file ({type(e).__name__}: {e})"
        ) from e
    if images.ndim != 3 or images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or len(images) == 0:
        raise ConfigError(
            f"config.data.path={path!r}: expected MNIST digits [N, 28, 28], got {images.shape}"
        )
    if labels.shape != (len(images),):
        raise ConfigError(
            f"config.data.path={path!r}: {len(images)} digits but labels of shape {labels.shape}"
        )
    return images.astype(np.uint8), labels.astype(np.int32)


def trajectories(
    rng: np.random.Generator, num_frames: int, num_digits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bouncing positions in [0, 1]^2, float64 [num_frames, num_digits, 2] (x, y), and the
    initial velocities [num_digits, 2] (range fractions per frame).

    Start uniform, direction uniform, STEP_LENGTH per frame; a coordinate leaving [0, 1] is
    clamped to the wall and its velocity component flips (the original generator's rule).
    """
    pos = rng.uniform(0.0, 1.0, size=(num_digits, 2))
    theta = rng.uniform(0.0, 2 * np.pi, size=num_digits)
    vel = STEP_LENGTH * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    initial = vel
    out = np.empty((num_frames, num_digits, 2))
    for t in range(num_frames):
        out[t] = pos
        pos = pos + vel
        low, high = pos < 0.0, pos > 1.0
        pos = np.clip(pos, 0.0, 1.0)
        vel = np.where(low | high, -vel, vel)
    return out, initial


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: array fields are not hashable
class MovingMnist:
    """Random-access Moving MNIST sequences (module docstring)."""

    digits: np.ndarray  # uint8 [N, 28, 28]
    classes: np.ndarray  # int32 [N]
    num_examples: int
    num_frames: int
    size: int = 64
    num_digits: int = NUM_DIGITS
    seed: int = 0
    split: str = "train"

    def __post_init__(self):
        if self.size < DIGIT_SIZE or self.num_frames < 1 or self.num_examples < 1:
            raise ConfigError(
                f"Moving MNIST needs data.image_size >= {DIGIT_SIZE}, num_frames >= 1 and "
                f"num_examples >= 1; got {self.size}, {self.num_frames}, {self.num_examples}"
            )
        if self.split not in SPLIT_IDS:
            raise ConfigError(f"unknown split {self.split!r}; expected one of {sorted(SPLIT_IDS)}")

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], int(index) % len(self)])
        which = rng.integers(len(self.digits), size=self.num_digits)
        path, vel = trajectories(rng, self.num_frames, self.num_digits)
        free = self.size - DIGIT_SIZE
        corner = (path * free).astype(np.int64)  # top-left pixel, [T, D, 2]
        canvas = np.zeros((self.num_frames, self.size, self.size), np.uint8)
        for d, digit in enumerate(self.digits[which]):
            for t in range(self.num_frames):
                x, y = corner[t, d]
                patch = canvas[t, y : y + DIGIT_SIZE, x : x + DIGIT_SIZE]
                np.maximum(patch, digit, out=patch)
        centres = (corner + DIGIT_SIZE / 2) / self.size
        classes = self.classes[which].astype(np.int32)
        return {
            "pixels": np.repeat(canvas[..., None], 3, axis=-1),
            "labels": {
                "digits": classes,
                "positions": centres.astype(np.float32),
                "velocity": (vel * free).astype(np.float32),
                "digit_sum": np.int32(classes.sum()),
                # One scalar class per digit (the order they were drawn in), for probes.
                **{f"digit_{k}": np.int32(c) for k, c in enumerate(classes)},
            },
        }


def moving_mnist_source(d: Mapping[str, Any], split: str) -> MovingMnist:
    """The `moving_mnist` source of a `config.data` block (data.path: the MNIST file)."""
    digits, classes = load_mnist(str(d["path"]), split)
    return MovingMnist(
        digits=digits,
        classes=classes,
        num_examples=int(d["num_examples"]),
        num_frames=int(d["num_frames"]),
        size=int(d["image_size"]),
        seed=int(d["seed"]),
        split=split,
    )
