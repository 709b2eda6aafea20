"""End-of-pretraining check: linear probe of the trained vs a randomly initialised encoder.

Fits the same linear probe on frozen, average-pooled target-encoder features of the built-in
dataset's latent labels for (a) the trained EMA encoder and (b) a freshly initialised one, and
writes {"trained", "random_init", "task", ...} (for the headline `config.probe.task`) plus
"tasks" (the same for every label the dataset carries) to <workdir>/probe_results.json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
from flax import linen as nn
from jax.sharding import Mesh

from jepa_jax.data import pipeline
from jepa_jax.data.synthetic import LABEL_CLASSES
from jepa_jax.errors import ConfigError
from jepa_jax.eval.linear_probe import fit_linear_probe, pooled_features
from jepa_jax.train.state import init_encoder_params

RESULTS_FILE = "probe_results.json"


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
    if task not in LABEL_CLASSES:
        raise ConfigError(
            f"config.probe.task={task!r} is not a built-in label; expected one of "
            f"{sorted(LABEL_CLASSES)}"
        )
    num_classes = LABEL_CLASSES[task]
    train_px, train_labels = pipeline.labelled_arrays(config.data, "train", int(probe.num_train))
    test_px, test_labels = pipeline.labelled_arrays(config.data, "test", int(probe.num_test))
    if task not in train_labels:
        raise ConfigError(
            f"config.probe.task={task!r} is not a label of data source {config.data.name!r}"
        )

    def apply_fn(params, x):
        return encoder.apply({"params": params}, x)

    shape = pipeline.input_shape(config.data)
    random_params = nn.meta.unbox(
        jax.jit(lambda k: init_encoder_params(encoder, k, shape))(
            jax.random.key(int(config.seed) + 1)
        )
    )
    # Features are extracted once per encoder; a linear fit per label is cheap next to that.
    tasks = [t for t in LABEL_CLASSES if t in train_labels]
    per_task: dict[str, dict[str, Any]] = {t: {"chance": 1.0 / LABEL_CLASSES[t]} for t in tasks}
    results: dict[str, Any] = {"task": task, "num_classes": num_classes}
    for name, params in (("trained", trained_params), ("random_init", random_params)):
        log(f"probe: extracting {name} features ({len(train_px)} train / {len(test_px)} test)")
        with jax.set_mesh(mesh):
            f_train = pooled_features(apply_fn, params, train_px, int(probe.batch_size), mesh)
            f_test = pooled_features(apply_fn, params, test_px, int(probe.batch_size), mesh)
        for t in tasks:
            fit = fit_linear_probe(
                f_train, train_labels[t], f_test, test_labels[t], LABEL_CLASSES[t]
            )
            per_task[t][name] = fit["accuracy"]
            if t == task:
                results[name] = fit["accuracy"]
                results[f"{name}_detail"] = fit
    results["chance"] = 1.0 / num_classes
    results["tasks"] = per_task
    log("linear probe test accuracy:")
    log(f"  {'label':<14} {'trained':>8} {'random init':>12} {'chance':>7}")
    for t in tasks:
        r = per_task[t]
        mark = "   <- config.probe.task" if t == task else ""
        log(f"  {t:<14} {r['trained']:>8.3f} {r['random_init']:>12.3f} {r['chance']:>7.3f}{mark}")
    log(
        f"linear probe on '{task}' ({num_classes} classes, chance {results['chance']:.3f}): "
        f"trained {results['trained']:.3f} | random init {results['random_init']:.3f}"
    )
    if jax.process_index() == 0:
        path = os.path.join(workdir, RESULTS_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, path)  # never leave a half-written results file
    return results
