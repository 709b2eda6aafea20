"""`jepa-jax eval --workdir=DIR [--config=configs/probes/<file>.py] [--checkpoint=PATH] [--step=N]`

Trains frozen-feature probes (linear, attentive, kNN; config.probe.probes) on the labelled
examples of config.data, for the target encoder of --checkpoint and for the baselines in
config.probe.baselines ("random_init", "pixels"). --checkpoint is an export directory
(`jepa-jax export` / `jepa-jax import`), a training workdir (its latest checkpoint, or --step) or
a workdir's checkpoints/<step>; it defaults to --workdir. Writes DIR/eval_results.json and
TensorBoard scalars <encoder>/<probe>/accuracy to DIR/tensorboard. Without --config the probes
are those of the training run's own config.json (its data and probe sections), so
`jepa-jax eval --workdir=RUN` probes a run as it was trained, and `--config.<key>=<value>`
overrides that config as it would a file's: `jepa-jax eval --checkpoint=RUN --workdir=OUT
--config.probe.task=shape --config.probe.baselines="('random_init','pixels')"`.

With --all_steps (or --steps=100,200,...) it probes several checkpoints of a training workdir
and writes DIR/learning_curve.json (accuracy vs step; baselines once), which
`python benchmarks/learning_curve.py DIR/learning_curve.json` draws as a PNG.
"""

from __future__ import annotations

from absl import flags

from jepa_jax.commands.common import (
    config_or_run_config,
    define_config_flag,
    directory_flag,
    override_run_config,
    start_command,
)

define_config_flag(
    "Probe config file, configs/probes/<file>.py[:arg]; override with --config.<key>=<value> "
    "(default: the training run's config.json)."
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
flags.mark_flags_as_required(["workdir"])


def prepare_flags(args: list[str]) -> None:
    """Before absl parses `args` (cli calls this): --config.<key> overrides without --config
    apply to the run's own config.json (found from --checkpoint, else --workdir)."""
    override_run_config(args, ("checkpoint", "workdir"), run_config)


def main(argv: list[str]) -> None:
    start_command(argv)
    from jepa_jax.errors import ConfigError

    # heavy imports after parsing
    from jepa_jax.eval.learning_curve import run_learning_curve
    from jepa_jax.eval.suite import run_eval

    workdir = directory_flag("workdir")
    checkpoint = _CHECKPOINT.value or workdir
    config = config_or_run_config(lambda: run_config(checkpoint))
    if _ALL_STEPS.value or _STEPS.value:
        if _STEP.value is not None:
            raise ConfigError("--step picks one checkpoint; use --steps or --all_steps for a curve")
        try:
            steps = [int(s) for s in _STEPS.value] if _STEPS.value else None
        except ValueError as e:
            raise ConfigError(f"--steps={','.join(_STEPS.value)}: expected integers") from e
        run_learning_curve(config, checkpoint, workdir, steps=steps)
    else:
        run_eval(config, checkpoint, workdir, _STEP.value)


def run_config(checkpoint: str):
    """The training config of the run `checkpoint` belongs to, as the probe config; ConfigError
    when there is none (an export directory) or the run is not a JEPA pretraining run."""
    import os

    from jepa_jax import rundir
    from jepa_jax.errors import ConfigError

    root = rundir.run_root(checkpoint)
    if not os.path.isfile(os.path.join(root, rundir.CONFIG_FILE)):
        raise ConfigError(
            f"--config is needed for --checkpoint={checkpoint!r}: it has no training "
            f"{rundir.CONFIG_FILE} naming the data and labels to probe (an export directory?)"
        )
    config = rundir.read_config(root)
    if config.get("method", "jepa") != "jepa":
        raise ConfigError(
            f"{checkpoint!r} is a {config.method!r} run: eval probes JEPA encoders (plan a world "
            f"model with `jepa-jax plan --checkpoint={checkpoint}`)"
        )
    return config
