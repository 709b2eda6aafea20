"""grain input pipelines: source -> shuffle -> repeat -> masks -> per-process rows -> batch.

The training stream is a pure function of the config: element i of the (infinite) stream is a
fixed example with fixed masks (`MaskSampler.sample_for_index(mask_seed, i)`), and each of n
processes reads its contiguous block of rows of every global batch (`ProcessBatchSlice`). So a
run resumes exactly from the grain iterator state saved in the checkpoint, and n processes
assemble exactly the global batches one process would.

Sources are looked up by `config.data.name` (data.registry; data.sources registers them). Sources
that decode files (`data.reading`) are read by stream position, so their random views (clip
start, crop, flip) are seeded like the masks and unreadable files are replaced deterministically.
With `config.data.num_workers` > 0, grain worker processes run everything up to batching.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from jepa_jax.data import reading, registry
from jepa_jax.data import sources as _sources  # noqa: F401  (registers every data source)
from jepa_jax.errors import ConfigError
from jepa_jax.masking import MaskSampler

# Seeds derived from config.seed for the independent random streams.
SHUFFLE_SEED_OFFSET = 1
MASK_SEED_OFFSET = 2
VIEW_SEED_OFFSET = 3


def build_source(data_config: Mapping[str, Any], split: str = "train") -> Any:
    """The random-access source named by `data_config.name`."""
    return registry.lookup(registry.SOURCES, data_config["name"])(data_config, split)


def input_shape(data_config: Mapping[str, Any]) -> tuple[int, ...]:
    """Per-example pixel shape: (T, H, W, 3) for video, (H, W, 3) for images."""
    return registry.lookup(registry.INPUT_SHAPES, data_config["name"])(data_config)


# The image stream of joint image + video training (config.images) draws its own shuffle, views
# and masks: its seeds are config.seed + this + the offsets above.
IMAGE_STREAM_SEED_OFFSET = 100


class AttachMasks:
    """Stream element (index i) -> {"pixels", "masks"}; labels are dropped for training.
    `as_clip` gives images a leading one-frame axis ([H, W, 3] -> [1, H, W, 3])."""

    def __init__(self, sampler: MaskSampler, seed: int, as_clip: bool = False):
        self.sampler = sampler
        self.seed = seed
        self.as_clip = as_clip

    def __call__(self, index: int, example: dict) -> dict:
        pixels = example["pixels"]
        out = {
            "pixels": pixels[None] if self.as_clip else pixels,
            "masks": self.sampler.sample_for_index(self.seed, index),
        }
        if reading.REPLACED in example:  # bad-input count, stripped by the loop
            out[reading.REPLACED] = example[reading.REPLACED]
        return out


def train_dataset(
    config: Mapping[str, Any],
    sampler: MaskSampler,
    process_index: int | None = None,
    process_count: int | None = None,
    image_sampler: MaskSampler | None = None,
) -> grain.IterDataset:
    """This process's batched training stream (infinite).

    Each batch is {"pixels": uint8 [L, ...], "masks": tuple of {"context": [L, Kc],
    "target": [L, G, Kt]}} with L = batch_size / process_count; batches of decoded sources also
    carry reading.REPLACED: int32 [L], the unreadable records replaced per example. With
    `image_sampler` (joint image + video training, config.images.batch_size > 0) each batch also
    has "image": the same fields for images.batch_size / process_count images of
    config.images.data as one-frame clips [Li, 1, H, W, 3], masked by `image_sampler`.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    seed = int(config.seed)
    ds = _batched_stream(
        config.data, int(config.batch_size), sampler, seed, process_index, process_count
    )
    if image_sampler is not None:
        images = _batched_stream(
            config.images.data,
            int(config.images.batch_size),
            image_sampler,
            seed + IMAGE_STREAM_SEED_OFFSET,
            process_index,
            process_count,
            as_clip=True,
        )
        ds = JointBatches(ds, images)
    prefetch = int(config.data.prefetch)
    it = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=int(config.data.num_threads), prefetch_buffer_size=prefetch)
    )
    workers = int(config.data.num_workers)
    if workers > 0:
        # grain's worker start-up reads absl flags: outside the CLI (notebooks, tests) take the
        # defaults rather than fail with UnparsedFlagAccessError.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        # Worker w computes batches w, w+W, ... and grain interleaves them in order, so the
        # stream is the same for any worker count; the workers' positions are part of the
        # iterator state (and so of checkpoints).
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=prefetch)
        )
    return it


def _batched_stream(
    data_config: Mapping[str, Any],
    batch_size: int,
    sampler: MaskSampler,
    seed: int,
    process_index: int,
    process_count: int,
    as_clip: bool = False,
) -> grain.MapDataset:
    """One source's batches (this process's rows) as a MapDataset: batch s is a pure function
    of (seed, s), whatever reads it."""
    if batch_size % process_count:
        raise ValueError(
            f"batch size {batch_size} of {data_config['name']!r} must be a multiple of the "
            f"process count {process_count}"
        )
    local_batch = batch_size // process_count
    source = build_source(data_config, "train")
    # Shuffle record indices (the same permutation as shuffling the source itself), so the read
    # step sees both the stream position and the record.
    ds = grain.MapDataset.range(len(source)).shuffle(seed=seed + SHUFFLE_SEED_OFFSET)
    ds = ds.repeat(None)  # reshuffled every epoch
    if reading.is_decoded_source(source):
        max_bad = float(data_config["max_bad_fraction"])
        ds = ds.map_with_index(reading.ReadExample(source, seed + VIEW_SEED_OFFSET, max_bad))
    else:
        ds = ds.map(source.__getitem__)
    ds = ds.map_with_index(AttachMasks(sampler, seed + MASK_SEED_OFFSET, as_clip))
    ds = ProcessBatchSlice(ds, process_index, process_count, local_batch)
    return ds.batch(local_batch, drop_remainder=True, batch_fn=stack_examples)


class JointBatches(grain.MapDataset):
    """Batch s of the video stream with batch s of the image stream under "image"; the image
    batch's REPLACED count joins the video batch's (summed into its first row), so the loop
    strips and reports one count."""

    def __init__(self, videos: grain.MapDataset, images: grain.MapDataset):
        super().__init__([videos, images])
        self._videos, self._images = videos, images

    def __len__(self) -> int:
        return min(len(self._videos), len(self._images))

    def __getitem__(self, index: int):
        if isinstance(index, slice):
            raise TypeError("JointBatches does not support slicing")
        batch = dict(self._videos[index])
        image = dict(self._images[index])
        replaced = image.pop(reading.REPLACED, None)
        if replaced is not None:
            total = batch.get(reading.REPLACED, np.zeros(len(batch["pixels"]), np.int32)).copy()
            total[0] += int(replaced.sum())
            batch[reading.REPLACED] = total
        batch["image"] = image
        return batch

    def __str__(self) -> str:
        return "JointBatches(videos, images)"


class ProcessBatchSlice(grain.MapDataset):
    """This process's rows of every global batch, as a MapDataset.

    Global batch s is stream elements [s*G, (s+1)*G) with G = local_batch * process_count;
    process p reads rows [p*L, (p+1)*L) of it. That is the layout
    `jax.make_array_from_process_local_data` assumes, so any number of processes assembles
    exactly the single-process global batch, row for row.
    """

    def __init__(
        self, parent: grain.MapDataset, process_index: int, process_count: int, local_batch: int
    ):
        super().__init__(parent)
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self._p, self._n, self._local = process_index, process_count, local_batch

    def __len__(self) -> int:
        return len(self._parent) // self._n

    def __getitem__(self, index: int):
        if isinstance(index, slice):
            raise TypeError("ProcessBatchSlice does not support slicing")
        batch, row = divmod(index, self._local)
        return self._parent[(batch * self._n + self._p) * self._local + row]

    def __str__(self) -> str:
        return f"ProcessBatchSlice(process {self._p} of {self._n}, {self._local} rows per batch)"


def stack_examples(examples: list[Any]) -> Any:
    """Stack a list of identically structured examples along a new leading axis."""
    return jax.tree.map(lambda *xs: np.stack(xs), *examples)


# Seeds the choice of probe examples, so every run and baseline probes the same ones.
PROBE_SAMPLE_SEED = 20260101


def source_with_examples(
    data_config: Mapping[str, Any], split: str, num_examples: int, setting: str
) -> Any:
    """The source of `split`; ConfigError naming `setting` (the config key that asked for
    `num_examples`) if the split holds fewer examples."""
    source = build_source(data_config, split)
    if num_examples > len(source):
        raise ConfigError(
            f"{setting}={num_examples}, but the {split!r} split of data source "
            f"{data_config['name']!r} has only {len(source)} examples: set {setting} <= "
            f"{len(source)}"
        )
    return source


def labelled_arrays(
    data_config: Mapping[str, Any],
    split: str,
    num_examples: int,
    setting: str = "the number of labelled examples",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`num_examples` of a split as (pixels uint8 [N, ...], labels {name: [N, ...]}).

    Fewer than the split holds are drawn uniformly across it (a fixed sample per split, in index
    order): the first N of a class-sorted folder would hold only its first classes. Reads every
    example into host memory: meant for the small labelled sets probes use. `setting` names the
    config key of `num_examples` in the error for a split that is too small.
    """
    return sample_labelled(
        source_with_examples(data_config, split, num_examples, setting), num_examples
    )


def sample_labelled(source: Any, num_examples: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`num_examples` (<= len(source)) of a built source, drawn as `labelled_arrays` says."""
    indices = range(num_examples)
    if num_examples < len(source):
        rng = np.random.default_rng([PROBE_SAMPLE_SEED, len(source), num_examples])
        indices = np.sort(rng.choice(len(source), size=num_examples, replace=False))
    examples = [source[int(i)] for i in indices]
    stacked = stack_examples(examples)
    return stacked["pixels"], stacked["labels"]
