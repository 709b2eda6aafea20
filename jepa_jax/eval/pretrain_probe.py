"""End-of-pretraining check: linear probe of the trained encoder against honest baselines.

Fits the same linear probe, for every class label of the training data (the built-in sets'
latent labels, an image folder's class, Moving MNIST's digits), on (a) frozen,
average-pooled features of the trained EMA encoder, (b) those of a freshly initialised encoder,
and (c) the raw pixels, flattened and *not* pooled (what a linear model reads without any
encoder). Prints one table (chance | pixels | random init | trained) in which a trained encoder
that does not beat both baselines is marked, and writes {"trained", "random_init", "pixels",
"task", ...} (for the headline `config.probe.task`) plus "tasks" (every label) to
<workdir>/probe_results.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from jepa_jax import rundir
from jepa_jax.data import labels, pipeline
from jepa_jax.errors import ConfigError
from jepa_jax.eval.linear_probe import (
    LogRegFit,
    fit_linear_probe,
    pooled_features,
    prepare_features,
)
from jepa_jax.models.init import init_encoder_params

RESULTS_FILE = "probe_results.json"


def probe_table(per_task: Mapping[str, Mapping[str, float]], headline: str) -> list[str]:
    """Lines of the accuracy table: label | chance | pixels | random init | trained, with a mark
    where the trained encoder does not beat both baselines."""
    lines = [
        "linear probe test accuracy (pixels: every pixel, unpooled; encoders: pooled tokens):",
        f"  {'label':<14} {'chance':>7} {'pixels':>7} {'random init':>12} {'trained':>8}",
    ]
    for t, r in per_task.items():
        notes = []
        best_baseline = max(r["pixels"], r["random_init"])
        if r["trained"] <= best_baseline:
            loser = "pixels" if r["pixels"] >= r["random_init"] else "random init"
            notes.append(f"<- trained does not beat {loser}")
        if t == headline:
            notes.append("(config.probe.task)")
        lines.append(
            f"  {t:<14} {r['chance']:>7.3f} {r['pixels']:>7.3f} {r['random_init']:>12.3f} "
            f"{r['trained']:>8.3f}   {' '.join(notes)}".rstrip()
        )
    return lines


def check_probe_task(task: str, example_labels: Mapping[str, Any], source: str) -> list[str]:
    """The class labels of a source (stacked labels of a few examples); ConfigError if `task`
    is not one of them. Called before training too, so a bad task fails in seconds."""
    tasks = labels.class_labels(example_labels)
    if task not in tasks:
        raise ConfigError(
            f"config.probe.task={task!r} is not a class label of data source {source!r}; its "
            f"class labels are {tasks} (or set config.probe.enabled=False)"
        )
    return tasks


# The probe's example counts: (split, config key).
PROBE_SPLITS = (("train", "num_train"), ("test", "num_test"))


def precheck_probe(config: Mapping[str, Any]) -> None:
    """Before training: the end-of-training probe's task must be a class label of the data, and
    each split must hold the examples the probe asks for (a user's folder may be small)."""
    if not config.probe.enabled:
        return
    sources = {
        split: pipeline.source_with_examples(
            config.data, split, int(config.probe[key]), f"config.probe.{key}"
        )
        for split, key in PROBE_SPLITS
    }
    # Each source is built (an image folder scanned) once: the label check reuses the train one.
    _, example_labels = pipeline.sample_labelled(sources["train"], min(2, len(sources["train"])))
    check_probe_task(config.probe.task, example_labels, config.data.name)


def run_pretrain_probe(
    config: Mapping[str, Any],
    encoder: Any,
    trained_params: Any,
    mesh: Mesh,
    workdir: str,
    log=print,
) -> dict[str, Any]:
    """Probe `trained_params` and a random init on `config.probe.task`; returns the results."""
    probe = config.probe
    task = probe.task
    (train_px, train_labels), (test_px, test_labels) = (
        pipeline.labelled_arrays(config.data, split, int(probe[key]), f"config.probe.{key}")
        for split, key in PROBE_SPLITS
    )
    tasks = check_probe_task(task, train_labels, config.data.name)
    classes = {t: labels.num_classes(t, train_labels[t], test_labels[t]) for t in tasks}
    num_classes = classes[task]

    def apply_fn(params, x):
        return encoder.apply({"params": params}, x)

    shape = pipeline.input_shape(config.data)
    random_params = nn.meta.unbox(
        jax.jit(lambda k: init_encoder_params(encoder, k, shape))(
            jax.random.key(int(config.seed) + 1)
        )
    )
    # Features are extracted once per encoder; a linear fit per label is cheap next to that.
    per_task: dict[str, dict[str, Any]] = {t: {"chance": 1.0 / classes[t]} for t in tasks}
    results: dict[str, Any] = {"task": task, "num_classes": num_classes}

    def encoder_features(params):
        def extract():
            with jax.set_mesh(mesh):
                return tuple(
                    pooled_features(apply_fn, params, px, int(probe.batch_size), mesh)
                    for px in (train_px, test_px)
                )

        return extract

    def pixel_features():  # every pixel as a feature, unpooled
        return tuple(px.reshape(len(px), -1).astype(np.float32) for px in (train_px, test_px))

    linear_fit = LogRegFit.from_config(probe.linear)
    for name, features in (
        ("trained", encoder_features(trained_params)),
        ("random_init", encoder_features(random_params)),
        ("pixels", pixel_features),
    ):
        log(f"probe: {name} features ({len(train_px)} train / {len(test_px)} test)")
        prepared = prepare_features(*features())  # standardised (and projected) once per set
        for t in tasks:
            fit = fit_linear_probe(
                None,
                train_labels[t],
                None,
                test_labels[t],
                classes[t],
                linear_fit,
                prepared=prepared,
            )
            per_task[t][name] = fit["accuracy"]
            if t == task:
                results[name] = fit["accuracy"]
                results[f"{name}_detail"] = fit
    results["chance"] = 1.0 / num_classes
    results["tasks"] = per_task
    for line in probe_table(per_task, task):
        log(line)
    log(
        f"linear probe on '{task}' ({num_classes} classes, chance {results['chance']:.3f}): "
        f"trained {results['trained']:.3f} | random init {results['random_init']:.3f} | "
        f"pixels {results['pixels']:.3f}"
    )
    if jax.process_index() == 0:
        rundir.write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
    return results
