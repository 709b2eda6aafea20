"""`jepa-jax eval`: frozen-feature probes of a checkpoint, with optional baselines.

Reads the target encoder of a training workdir (latest or chosen checkpoint) or of an export
directory, cuts every labelled example of `config.data` into views (eval/views.py), extracts
frozen features once per encoder, and runs the configured probes on them:

  linear     logistic regression on pooled features (eval/linear_probe.py)
  attentive  V-JEPA / V-JEPA 2 attentive probe grid (eval/attentive_probe.py)
  knn        cosine kNN (eval/knn.py)
  linear_flat, knn_flat   the same on every token's features, flattened (not pooled), for
             encoders whose tokens x width <= config.probe.flat_tokens_max_dim

on the checkpoint's encoder ("trained") and on each of `config.probe.baselines`: "random_init"
(the same architecture, freshly initialised) and "pixels" (the raw pixel patches). Results go to
<workdir>/eval_results.json and as TensorBoard scalars `<encoder>/<probe>/accuracy` (at the
checkpoint's step) to <workdir>/tensorboard.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import linen as nn

from jepa_jax.data import pipeline
from jepa_jax.data.labels import DENSE_CLASSES, KNOWN_CLASSES
from jepa_jax.errors import ConfigError, need_under
from jepa_jax.eval.attentive_probe import fit_attentive_probe
from jepa_jax.eval.dense_probe import fit_dense_probe, token_labels
from jepa_jax.eval.features import (
    FrozenEncoder,
    extract_view_features,
    pixel_features,
    vit_features,
)
from jepa_jax.eval.knn import knn_accuracy
from jepa_jax.eval.linear_probe import LogRegFit, fit_linear_probe
from jepa_jax.eval.views import ViewSpec, check_views, cut_views
from jepa_jax.export.encoder_dir import is_encoder_dir, read_encoder_config, read_encoder_dir
from jepa_jax.export.target_encoder import restore_target_encoder
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.vit import token_grid
from jepa_jax.rundir import write_json_atomic
from jepa_jax.sharding import create_mesh, replicated

RESULTS_FILE = "eval_results.json"
PROBES = ("linear", "attentive", "knn", "dense")
BASELINES = ("random_init", "pixels")


def validate_probe_config(probe: Mapping[str, Any], depth: int) -> None:
    """ConfigError naming the key for probe settings that cannot work with this encoder."""

    need = need_under("probe")

    probes, baselines = tuple(probe.probes), tuple(probe.baselines)
    need(bool(probes) and set(probes) <= set(PROBES), "probes", probes, f"a subset of {PROBES}")
    need(set(baselines) <= set(BASELINES), "baselines", baselines, f"a subset of {BASELINES}")
    need(int(probe.num_train) >= 5, "num_train", probe.num_train, "an integer >= 5")
    need(int(probe.num_test) >= 1, "num_test", probe.num_test, "an integer >= 1")
    need(int(probe.batch_size) >= 1, "batch_size", probe.batch_size, "an integer >= 1")
    k = int(probe.linear.last_k_blocks)
    need(1 <= k <= depth, "linear.last_k_blocks", k, f"an integer in [1, {depth}] (encoder depth)")
    need(int(probe.knn.k) >= 1, "knn.k", probe.knn.k, "an integer >= 1")
    need(float(probe.knn.temperature) >= 0, "knn.temperature", probe.knn.temperature, ">= 0")
    a = probe.attentive
    need(int(a.epochs) >= 1, "attentive.epochs", a.epochs, "an integer >= 1")
    min_steps = a.get("min_steps", 0)
    need(int(min_steps) >= 0, "attentive.min_steps", min_steps, "an integer >= 0")
    need(int(a.batch_size) >= 1, "attentive.batch_size", a.batch_size, "an integer >= 1")
    need(int(a.num_self_blocks) >= 0, "attentive.num_self_blocks", a.num_self_blocks, ">= 0")
    need(len(a.lrs) > 0 and all(float(x) > 0 for x in a.lrs), "attentive.lrs", a.lrs, "lrs > 0")
    wds = a.weight_decays
    need(len(wds) > 0 and all(float(x) >= 0 for x in wds), "attentive.weight_decays", wds, ">= 0")
    need(0 < float(a.val_fraction) < 1, "attentive.val_fraction", a.val_fraction, "in (0, 1)")
    if "dense" in probes:  # token maps are cut from whole clips: one view each
        views = (int(probe.num_clips), int(probe.num_views))
        need(views == (1, 1), "num_clips", views[0], "1 (with num_views 1) for the dense probe")


def load_checkpoint_encoder(
    checkpoint: str, step: int | None, sharding: jax.sharding.Sharding
) -> tuple[EncoderConfig, Any, dict[str, Any]]:
    """(EncoderConfig, params, provenance) of an export directory or a training checkpoint."""
    if os.path.isdir(checkpoint) and is_encoder_dir(checkpoint):
        if step is not None:
            raise ConfigError(f"--step applies to training workdirs; {checkpoint!r} is an export")
        cfg, params = read_encoder_dir(checkpoint, sharding)
        _, data = read_encoder_config(checkpoint)
        source = data.get("source", {})
        return cfg, params, {"path": os.path.abspath(checkpoint), "kind": "export", **source}
    _, cfg, params, step = restore_target_encoder(checkpoint, step, sharding)
    return cfg, params, {"path": os.path.abspath(checkpoint), "kind": "workdir", "step": step}


def task_and_classes(probe: Mapping[str, Any], labels: Mapping[str, np.ndarray], where: str) -> int:
    """The class count for `probe.task`, checked against the labels of both splits.

    Raises:
      ConfigError: the task is not a label of the data, or the labels do not fit the class
        count (a label count mismatch).
    """
    task = probe.task
    if task not in labels:
        raise ConfigError(
            f"config.probe.task={task!r} is not a label of {where}; its labels are {sorted(labels)}"
        )
    y = np.asarray(labels[task])
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(
            f"config.probe.task={task!r} is not a class label (shape {y.shape[1:]}, {y.dtype})"
        )
    declared = probe.num_classes
    if declared is None:
        declared = KNOWN_CLASSES.get(task)
    num_classes = int(declared) if declared is not None else int(y.max()) + 1
    if y.min() < 0 or y.max() >= num_classes:
        raise ConfigError(
            f"label count mismatch: '{task}' labels of {where} span [{y.min()}, {y.max()}] but "
            f"the probe has {num_classes} classes (config.probe.num_classes={probe.num_classes})"
        )
    return num_classes


def dense_classes(probe: Mapping[str, Any], labels: Mapping[str, np.ndarray], source: str) -> int:
    """Class count of the dense label `probe.dense_label`; ConfigError if the source lacks it."""
    name = probe.dense_label
    y = labels.get(name)
    if y is None or y.ndim < 3 or not np.issubdtype(y.dtype, np.integer):
        dense = sorted(k for k, v in labels.items() if v.ndim >= 3)
        raise ConfigError(
            f"config.probe.dense_label={name!r} is not a per-pixel label of {source}; its dense "
            f"labels are {dense} (the built-in shapes sets have 'shape_map')"
        )
    return DENSE_CLASSES.get(name, int(y.max()) + 1)


def view_spec(probe: Mapping[str, Any], cfg: EncoderConfig) -> ViewSpec:
    """Views from the probe config, defaulting to the encoder's training clip and size."""
    return ViewSpec(
        clip_frames=int(probe.clip_frames or (cfg.input_shape[0] if cfg.is_video else 0)) or None,
        num_clips=int(probe.num_clips),
        crop_size=int(probe.crop_size or cfg.input_shape[-2]),
        num_views=int(probe.num_views),
    )


def as_encoder_input(pixels: np.ndarray, cfg: EncoderConfig, clip_frames: int | None) -> np.ndarray:
    """Images for a video encoder become one-frame clips through its image tokenizer (V-JEPA
    2.1) or, without one, clips of one repeated frame (V-JEPA's way of evaluating images); video
    for an image encoder is an error."""
    if cfg.is_video and pixels.ndim == 4:
        if cfg.image_tokenizer:
            return pixels[:, None]
        return np.repeat(pixels[:, None], clip_frames, axis=1)
    if not cfg.is_video and pixels.ndim == 5:
        raise ConfigError("config.data gives video clips but the encoder is an image encoder")
    return pixels


def run_probes(
    encoder: FrozenEncoder,
    probe: Mapping[str, Any],
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    mesh,
    seed: int,
    log: Callable[[str], None],
    dense: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every configured probe on one encoder's frozen features; {probe: result dict}.

    `dense` ({"train": int [N, K], "test": int [M, K] token classes, "num_classes"}) feeds the
    dense probe, when config.probe.probes has it."""
    probes = tuple(probe.probes)
    # Flattened tokens keep *where* things are, which pooling averages away; raw pixels' pooled
    # features are already their flattened patches.
    flat_limit = int(probe.get("flat_tokens_max_dim", 0))
    want_flat = bool(
        flat_limit > 0 and encoder.name != "pixels" and {"linear", "knn"} & set(probes)
    )
    feats = {}
    for split, (views, _) in data.items():
        n, v = views.shape[:2]
        log(f"{encoder.name}: extracting {split} features ({n} examples x {v} views)")
        feats[split] = extract_view_features(
            encoder,
            views,
            int(probe.batch_size),
            mesh,
            bool({"attentive", "dense"} & set(probes)) or want_flat,
            log,
        )
    token_dim = int(np.prod(feats["train"][0].shape[2:])) if want_flat else 0
    want_flat = want_flat and token_dim <= flat_limit
    (train_tokens, train_pooled), (test_tokens, test_pooled) = feats["train"], feats["test"]
    train_y, test_y = data["train"][1], data["test"][1]
    results: dict[str, Any] = {}

    linear_fit = LogRegFit.from_config(probe.linear)

    def linear_and_knn(train_x, test_x, suffix: str) -> None:
        if "linear" in probes:
            results["linear" + suffix] = fit_linear_probe(
                train_x, train_y, test_x, test_y, num_classes, linear_fit, seed
            )
            if not suffix:  # pooled features: the last k blocks' averages
                results["linear"]["last_k_blocks"] = int(probe.linear.last_k_blocks)
        if "knn" in probes:
            results["knn" + suffix] = knn_accuracy(
                train_x,
                train_y,
                test_x,
                test_y,
                num_classes,
                k=int(probe.knn.k),
                temperature=float(probe.knn.temperature),
            )

    linear_and_knn(train_pooled, test_pooled, "")
    if want_flat:
        log(f"{encoder.name}: linear / kNN on flattened tokens ({token_dim} dims)")
        linear_and_knn(
            *(
                t.reshape(t.shape[:2] + (-1,)).astype(np.float32)
                for t in (train_tokens, test_tokens)
            ),
            "_flat",
        )
    if "dense" in probes:
        log(f"{encoder.name}: dense probe on {train_tokens.shape[2]} tokens per clip")
        results["dense"] = fit_dense_probe(
            train_tokens[:, 0],
            dense["train"],
            test_tokens[:, 0],
            dense["test"],
            dense["num_classes"],
            linear_fit,
            seed,
        )
    if "attentive" in probes:
        a = probe.attentive
        t0 = time.perf_counter()
        n_probes = len(a.lrs) * len(a.weight_decays)
        log(f"{encoder.name}: attentive probe, {n_probes} (lr, wd) probes in parallel")
        results["attentive"] = fit_attentive_probe(
            train_tokens,
            train_y,
            test_tokens,
            test_y,
            num_classes,
            num_heads=int(a.num_heads or encoder.num_heads),
            num_self_blocks=int(a.num_self_blocks),
            lrs=tuple(a.lrs),
            weight_decays=tuple(a.weight_decays),
            epochs=int(a.epochs),
            min_steps=int(a.get("min_steps", 0)),
            batch_size=int(a.batch_size),
            val_fraction=float(a.val_fraction),
            seed=seed,
            log=log,
        )
        results["attentive"]["seconds"] = round(time.perf_counter() - t0, 1)
    summary = " | ".join(f"{name} {r['accuracy']:.3f}" for name, r in results.items())
    log(f"{encoder.name}: {summary}")
    return results


def run_eval(
    config: Mapping[str, Any],
    checkpoint: str,
    workdir: str,
    step: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Probe the encoder of `checkpoint` as `config.probe` says; write and return the results.

    Args:
      config: a probe config (configs/probes/*.py): `data`, `probe`, `mesh`, `seed`.
      checkpoint: an export directory, a training workdir, or `<workdir>/checkpoints/<step>`.
      workdir: where eval_results.json and tensorboard/ go.
      step: checkpoint step in a training workdir (default: the latest).

    Returns:
      The results dict written to <workdir>/eval_results.json.
    """
    probe = config.probe
    mesh = create_mesh(config.mesh)
    t_start = time.perf_counter()
    cfg, params, source = load_checkpoint_encoder(checkpoint, step, replicated(mesh))
    validate_probe_config(probe, cfg.depth)
    spec = view_spec(probe, cfg)
    log(
        f"eval: encoder width {cfg.width}, depth {cfg.depth} from {source['kind']} "
        f"{source['path']} (step {source.get('step', '-')}); {mesh.devices.size} device(s)"
    )
    data, num_classes, dense = {}, None, None
    # V-JEPA 2.1 encoders read images as one-frame clips through their tubelet-1 tokenizer.
    tubelet = cfg.tubelet_size
    if cfg.image_tokenizer and len(pipeline.input_shape(config.data)) == 3:
        spec, tubelet = dataclasses.replace(spec, clip_frames=1), 1
    for split, count in (("train", int(probe.num_train)), ("test", int(probe.num_test))):
        pixels, labels = pipeline.labelled_arrays(config.data, split, count)
        num_classes = task_and_classes(probe, labels, f"config.data ({config.data.name} {split})")
        pixels = as_encoder_input(pixels, cfg, spec.clip_frames)
        check_views(spec, pixels.shape[1:], cfg.patch_size, tubelet)
        data[split] = (cut_views(pixels, spec), np.asarray(labels[probe.task], np.int32))
        if "dense" in probe.probes:
            dense = dense or {"num_classes": dense_classes(probe, labels, config.data.name)}
            label_map = labels[probe.dense_label]
            if cfg.is_video and label_map.ndim == 3:  # images as clips of a repeated frame
                label_map = np.repeat(label_map[:, None], spec.clip_frames, axis=1)
            grid = token_grid(pixels.shape, cfg.patch_size, tubelet)
            dense[split] = token_labels(label_map, grid, cfg.patch_size, tubelet)
    module = cfg.build()
    encoders = [
        FrozenEncoder(
            "trained", params, vit_features(module, int(probe.linear.last_k_blocks)), cfg.num_heads
        )
    ]
    if "random_init" in probe.baselines:
        from jepa_jax.models.init import init_encoder_params

        random_params = jax.jit(
            lambda k: nn.meta.unbox(init_encoder_params(module, k, cfg.input_shape)),
            out_shardings=replicated(mesh),
        )(jax.random.key(int(config.seed) + 1))
        encoders.append(
            FrozenEncoder("random_init", random_params, encoders[0].features, cfg.num_heads)
        )
    if "pixels" in probe.baselines:
        encoders.append(
            FrozenEncoder("pixels", {}, pixel_features(cfg.patch_size, tubelet), cfg.num_heads)
        )
    results: dict[str, Any] = {
        "checkpoint": source,
        "data": config.data.name,
        "task": probe.task,
        "num_classes": num_classes,
        "chance": 1.0 / num_classes,
        "num_train": int(probe.num_train),
        "num_test": int(probe.num_test),
        "views": {
            "clip_frames": spec.clip_frames,
            "num_clips": spec.num_clips,
            "crop_size": spec.crop_size,
            "num_views": spec.num_views,
        },
        "encoders": {},
    }
    for encoder in encoders:
        results["encoders"][encoder.name] = run_probes(
            encoder, probe, data, num_classes, mesh, int(config.seed), log, dense
        )
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    write_results(workdir, results, int(source.get("step") or 0))
    log(f"eval: wrote {os.path.join(workdir, RESULTS_FILE)} in {results['seconds']}s")
    return results


def write_results(workdir: str, results: Mapping[str, Any], step: int) -> None:
    """eval_results.json (atomically) and TensorBoard scalars, from process 0 only."""
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
    from jepa_jax.event_writer import ScalarWriter

    writer = ScalarWriter(os.path.join(workdir, "tensorboard"))
    scalars = {
        f"{enc}/{name}/accuracy": r["accuracy"]
        for enc, per_probe in results["encoders"].items()
        for name, r in per_probe.items()
    }
    writer.write_scalars(step, scalars)
    writer.flush()
    writer.close()
