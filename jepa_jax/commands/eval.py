"""`jepa-jax eval --config=configs/probes/<file>.py --workdir=DIR [--checkpoint=PATH] [--step=N]`

Trains frozen-feature probes (linear, attentive, kNN; config.probe.probes) on the labelled
examples of config.data, for the target encoder of --checkpoint and for the baselines in
config.probe.baselines ("random_init", "pixels"). --checkpoint is an export directory
(`jepa-jax export` / `jepa-jax import`), a training workdir (its latest checkpoint, or --step) or
a workdir's checkpoints/<step>; it defaults to --workdir. Writes DIR/eval_results.json and
TensorBoard scalars <encoder>/<probe>/accuracy to DIR/tensorboard.

With --all_steps (or --steps=100,200,...) it probes several checkpoints of a training workdir
and writes DIR/learning_curve.json (accuracy vs step; baselines once), which
`python benchmarks/learning_curve.py DIR/learning_curve.json` draws as a PNG.
"""

from __future__ import annotations

from absl import flags

from jepa_jax.commands.common import (
    define_config_flag,
    directory_flag,
    loaded_config,
    start_command,
)

define_config_flag(
    "Probe config file, configs/probes/<file>.py[:arg]; override with --config.<key>=<value>."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory: eval_results.json and tensorboard/."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "Export directory, training workdir or <workdir>/checkpoints/<step> (default: --workdir).",
)
_STEP = flags.DEFINE_integer(
    "step", None, "Checkpoint step of a training workdir (default: latest)."
)
_ALL_STEPS = flags.DEFINE_bool(
    "all_steps", False, "Probe every kept checkpoint of the training workdir: a learning curve."
)
_STEPS = flags.DEFINE_list("steps", None, "Checkpoint steps for a learning curve, e.g. 100,200.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    start_command(argv)
    from jepa_jax.errors import ConfigError
    from jepa_jax.eval.suite import run_eval, run_learning_curve  # heavy imports after parsing

    config = loaded_config()
    workdir = directory_flag("workdir")
    checkpoint = _CHECKPOINT.value or workdir
    if _ALL_STEPS.value or _STEPS.value:
        if _STEP.value is not None:
            raise ConfigError("--step picks one checkpoint; use --steps or --all_steps for a curve")
        try:
            steps = [int(s) for s in _STEPS.value] if _STEPS.value else None
        except ValueError as e:
            raise ConfigError(f"--steps={','.join(_STEPS.value)}: expected integers") from e
        run_learning_curve(config, checkpoint, workdir, steps)
    else:
        run_eval(config, checkpoint, workdir, _STEP.value)
