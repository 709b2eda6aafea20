"""Built-in datasets, generated procedurally and deterministically from (seed, split, index).

Nothing is downloaded. Each example is one coloured shape on a smooth background; in the video
set it moves at constant velocity for the whole clip: the start is drawn so that the path stays
inside the frame (a slower speed where a long clip needs it), so the motion the clip shows is
the motion its labels name, never a bounce. Every example carries its latent labels, so probes
can test what an encoder learned:

  shape          int, one of SHAPES
  color          int, one of the COLORS palette
  direction      int, the velocity direction in NUM_DIRECTIONS bins (video only)
  position_cell  int, the 3x3 grid cell of the initial centre
  position       float32 [2], the initial centre (x, y) in [0, 1]
  velocity       float32 [2], pixels per frame (video only)
  shape_map      uint8 [T, H, W] (video) or [H, W]: per pixel, 1 + shape where the labelled
                 object is visible, 0 elsewhere (a dense label: eval/dense_probe.py)

Both classes follow grain's RandomAccessDataSource protocol (`__len__`, `__getitem__`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ("square", "circle", "triangle", "cross")
COLORS = np.array(
    [
        [230, 60, 60],  # red
        [60, 200, 80],  # green
        [70, 110, 240],  # blue
        [240, 210, 60],  # yellow
        [200, 80, 220],  # magenta
        [70, 220, 220],  # cyan
    ],
    dtype=np.float32,
)
NUM_DIRECTIONS = 8
POSITION_CELLS = 3

# Number of classes of each categorical label.
DENSE_LABEL_CLASSES = {"shape_map": 1 + len(SHAPES)}
LABEL_CLASSES = {
    "shape": len(SHAPES),
    "color": len(COLORS),
    "direction": NUM_DIRECTIONS,
    "position_cell": POSITION_CELLS * POSITION_CELLS,
}
SPLIT_IDS = {"train": 0, "test": 1}


def _split_id(split: str) -> int:
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {sorted(SPLIT_IDS)}, got {split!r}")
    return SPLIT_IDS[split]


def _shape_mask(shape: int, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Inside test for a unit-radius shape at offsets (dx, dy) in radii (y points down)."""
    if shape == 0:  # square, scaled so its area is close to the circle's
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.886
    if shape == 1:  # circle
        return dx * dx + dy * dy <= 1.0
    if shape == 2:  # triangle, apex up
        return (dy <= 0.8) & (np.abs(dx) <= (dy + 1.0) / 1.8 * 1.15)
    # cross
    return ((np.abs(dx) <= 0.36) & (np.abs(dy) <= 1.0)) | (
        (np.abs(dy) <= 0.36) & (np.abs(dx) <= 1.0)
    )


def _bounce(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold free positions into [lo, hi] as reflections off both walls (a triangle wave)."""
    span = hi - lo
    u = np.mod(p - lo, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


@dataclasses.dataclass(frozen=True)
class SceneStyle:
    """How rich a scene is beyond its one labelled object (config.data.distractors/texture).

    distractors: smaller objects of random shape and colour, each moving its own way, drawn
      behind or in front of the labelled object (so they clutter and occlude it).
    texture: a static random texture (smooth blobs) over the background gradient.
    """

    distractors: int = 0
    texture: bool = False


@dataclasses.dataclass(frozen=True)
class _Object:
    shape: int
    color: int
    radius: float
    start: np.ndarray  # (x, y) pixels
    velocity: np.ndarray  # (vx, vy) pixels per frame
    direction: int


@dataclasses.dataclass(frozen=True)
class _Scene:
    main: _Object  # the labelled object
    behind: tuple[_Object, ...]  # distractors drawn before the labelled object
    in_front: tuple[_Object, ...]  # distractors drawn after it (occluders)
    background: np.ndarray  # float32 [H, W, 3]


def _sample_object(
    rng: np.random.Generator, size: int, num_frames: int, radius_range: tuple[float, float]
) -> _Object:
    """A random object; with num_frames > 1 it moves and its path stays inside the frame."""
    shape = int(rng.integers(len(SHAPES)))
    color = int(rng.integers(len(COLORS)))
    radius = float(rng.uniform(*radius_range) * size)
    direction, velocity = 0, np.zeros(2)
    if num_frames > 1:
        # Angle uniform; the label is its nearest of NUM_DIRECTIONS bins.
        angle = rng.uniform(0, 2 * np.pi)
        direction = int(np.round(angle / (2 * np.pi / NUM_DIRECTIONS))) % NUM_DIRECTIONS
        speed = rng.uniform(0.03, 0.06) * size
        # At most 90% of the free span in the clip, so the path fits on both axes.
        max_speed = 0.9 * (size - 2 * radius) / (num_frames - 1)
        speed = min(speed, max_speed)
        velocity = speed * np.array([np.cos(angle), np.sin(angle)])
    travel = velocity * max(num_frames - 1, 0)
    # Start where the whole path [start, start + travel] stays within [radius, size - radius].
    lo = radius + np.maximum(-travel, 0.0)
    hi = size - radius - np.maximum(travel, 0.0)
    start = lo + rng.uniform(0.0, 1.0, size=2) * (hi - lo)
    return _Object(shape, color, radius, start, velocity, direction)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """float32 [size, size, 3] in about [-1, 1]: a cells x cells grid of random colours,
    bilinearly interpolated (blobs about size / cells pixels across)."""
    grid = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1, 3))
    u = (np.arange(size) + 0.5) / size * cells
    i = np.minimum(u.astype(int), cells - 1)
    f = (u - i)[:, None]
    rows = grid[i] * (1 - f[..., None]) + grid[i + 1] * f[..., None]  # [size, cells + 1, 3]
    fc = (u - i)[None, :, None]
    return (rows[:, i] * (1 - fc) + rows[:, i + 1] * fc).astype(np.float32)


def _sample_scene(
    rng: np.random.Generator, size: int, num_frames: int, style: SceneStyle = SceneStyle()
) -> _Scene:
    """A random scene: the labelled object, then the style's distractors and texture."""
    # The labelled object's draws come first, so a plain style reproduces the original set.
    main = _sample_object(rng, size, num_frames, (0.15, 0.25))
    # Smooth background: a dark base colour plus a linear gradient in a random direction.
    base = rng.uniform(10, 60, size=3)
    g_angle = rng.uniform(0, 2 * np.pi)
    g_amp = rng.uniform(0, 40)
    ramp = np.linspace(-0.5, 0.5, size)
    grad = np.cos(g_angle) * ramp[None, :] + np.sin(g_angle) * ramp[:, None]
    background = (base[None, None, :] + g_amp * grad[..., None]).astype(np.float32)
    if style.texture:
        background = background + 45.0 * _smooth_noise(rng, size, cells=4)
    behind, in_front = [], []
    for _ in range(style.distractors):
        # Smaller than the labelled object (at most 0.6 of its smallest radius), so which
        # object the labels describe is never ambiguous.
        d = _sample_object(rng, size, num_frames, (0.06, 0.09))
        (in_front if rng.uniform() < 0.5 else behind).append(d)
    return _Scene(main, tuple(behind), tuple(in_front), background)


def _inside(obj: _Object, num_frames: int, size: int) -> np.ndarray:
    """bool [T, H, W]: the pixels `obj` covers in each frame."""
    t = np.arange(num_frames, dtype=np.float64)[:, None]
    centers = _bounce(obj.start[None] + t * obj.velocity[None], obj.radius, size - obj.radius)
    coords = np.arange(size, dtype=np.float32) + 0.5
    dx = (coords[None, None, :] - centers[:, 0, None, None]) / obj.radius
    dy = (coords[None, :, None] - centers[:, 1, None, None]) / obj.radius
    return _shape_mask(obj.shape, dx, dy)


def _render(scene: _Scene, num_frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The scene drawn back to front (background, distractors behind, the labelled object,
    distractors in front): (uint8 frames [T, H, W, 3], uint8 shape map [T, H, W]: 1 + the
    labelled object's shape where it stays visible, 0 elsewhere). Each object's pixels are
    computed once and serve both."""
    frames = np.repeat(scene.background[None], num_frames, axis=0)
    visible = np.zeros((num_frames, size, size), bool)
    for obj in (*scene.behind, scene.main, *scene.in_front):
        inside = _inside(obj, num_frames, size)
        frames[inside] = COLORS[obj.color]
        visible = inside if obj is scene.main else visible & ~inside
    shape_map = np.where(visible, np.uint8(1 + scene.main.shape), np.uint8(0))
    return np.clip(frames, 0, 255).astype(np.uint8), shape_map


def _labels(scene: _Scene, size: int, moving: bool) -> dict[str, np.ndarray]:
    """The labelled object's latent labels (module docstring)."""
    obj = scene.main
    pos = (obj.start / size).astype(np.float32)
    cell = np.minimum((pos * POSITION_CELLS).astype(int), POSITION_CELLS - 1)
    labels = {
        "shape": np.int32(obj.shape),
        "color": np.int32(obj.color),
        "position_cell": np.int32(cell[1] * POSITION_CELLS + cell[0]),
        "position": pos,
    }
    if moving:
        labels["direction"] = np.int32(obj.direction)
        labels["velocity"] = obj.velocity.astype(np.float32)
    return labels


class _ShapesSet:
    """What the shapes sets share: their length, the argument check and drawing an example.
    Subclasses are frozen dataclasses with num_examples, num_frames, size, seed, split, style."""

    def __post_init__(self):
        """ValueError naming the set for a size no example can have; a bad split is one too."""
        if self.num_examples < 1 or self.num_frames < 1 or self.size < 8:
            raise ValueError(
                f"{type(self).__name__} needs num_examples >= 1, num_frames >= 1, size >= 8; got "
                f"{self.num_examples}, {self.num_frames}, {self.size}"
            )
        _split_id(self.split)

    def __len__(self) -> int:
        return self.num_examples

    def _draw(self, index: int) -> tuple[_Scene, np.ndarray, np.ndarray]:
        """(scene, frames uint8 [T, S, S, 3], shape map [T, S, S]) of example `index`: a pure
        function of (seed, split, index mod the set's length)."""
        key = [self.seed, _split_id(self.split), int(index) % self.num_examples]
        scene = _sample_scene(np.random.default_rng(key), self.size, self.num_frames, self.style)
        return (scene, *_render(scene, self.num_frames, self.size))


@dataclasses.dataclass(frozen=True)
class MovingShapesVideo(_ShapesSet):
    """Video of one shape moving at constant velocity, its path inside the frame.

    Each item: {"pixels": uint8 [num_frames, size, size, 3], "labels": {...}} (module docstring).
    """

    num_examples: int
    num_frames: int
    size: int
    seed: int = 0
    split: str = "train"
    style: SceneStyle = SceneStyle()

    def __getitem__(self, index: int) -> dict:
        scene, pixels, shape_map = self._draw(index)
        labels = {**_labels(scene, self.size, True), "shape_map": shape_map}
        return {"pixels": pixels, "labels": labels}


@dataclasses.dataclass(frozen=True)
class ShapesImages(_ShapesSet):
    """Still images of one shape: {"pixels": uint8 [size, size, 3], "labels": {...}}."""

    num_examples: int
    size: int
    seed: int = 0
    split: str = "train"
    style: SceneStyle = SceneStyle()
    num_frames = 1  # a class constant, not a field: an image is a one-frame scene

    def __getitem__(self, index: int) -> dict:
        scene, frames, shape_map = self._draw(index)
        labels = {**_labels(scene, self.size, False), "shape_map": shape_map[0]}
        return {"pixels": frames[0], "labels": labels}
