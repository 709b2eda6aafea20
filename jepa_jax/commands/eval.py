"""`jepa-jax eval --config=configs/probes/<file>.py --workdir=DIR [--checkpoint=PATH] [--step=N]`

Trains frozen-feature probes (linear, attentive, kNN; config.probe.probes) on the labelled
examples of config.data, for the target encoder of --checkpoint and for the baselines in
config.probe.baselines ("random_init", "pixels"). --checkpoint is an export directory
(`jepa-jax export` / `jepa-jax import`), a training workdir (its latest checkpoint, or --step) or
a workdir's checkpoints/<step>; it defaults to --workdir. Writes DIR/eval_results.json and
TensorBoard scalars <encoder>/<probe>/accuracy to DIR/tensorboard.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from jepa_jax.commands.common import directory_flag, loaded_config, quiet_logging_unless_asked

config_flags.DEFINE_config_file(
    "config",
    None,
    "Probe config file, configs/probes/<file>.py[:arg]; override with --config.<key>=<value>.",
    lock_config=True,
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
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    quiet_logging_unless_asked()
    from jepa_jax.eval.suite import run_eval  # heavy imports after flag parsing

    config = loaded_config()
    workdir = directory_flag("workdir")
    run_eval(config, _CHECKPOINT.value or workdir, workdir, _STEP.value)
