"""Which loss term trains the encoder: each term's gradient norm, at init or at a checkpoint.

For a JEPA training config (fresh params) or a training workdir (its config.json and latest
checkpoint, or --step), prints per term of the objective (prediction, dense context loss,
regularizer) its value and the L2 norm of its gradient on the encoder, the predictor and (where
the recipe has one) the regularizer's projector, the mean over --batches batches. Adam follows
the sum of the terms' gradients, so a term whose encoder gradient is a small fraction of
another's barely shapes the encoder whatever its value (jepa_jax/train/loss_balance.py).

  python benchmarks/loss_balance.py --config=configs/default.py          # at init
  python benchmarks/loss_balance.py --run=workdirs/default                 # its latest checkpoint
  python benchmarks/loss_balance.py --run=workdirs/default --step=50

Last line: <term>_encoder_grad=... for each term, and regularizer_over_prediction=... (the
ratio of their encoder gradient norms) where the objective has both.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from jepa_jax.commands.common import define_config_flag, loaded_config, start_command  # noqa: E402

define_config_flag("Training config (fresh params); not with --run.")
_RUN = flags.DEFINE_string("run", None, "A training workdir: its config and a checkpoint.")
_STEP = flags.DEFINE_integer("step", None, "The --run checkpoint's step (default: the latest).")
_BATCHES = flags.DEFINE_integer("batches", 4, "Batches averaged over.")


def main(argv):
    start_command(argv)
    from jepa_jax import rundir
    from jepa_jax.checkpoint import Checkpointer
    from jepa_jax.errors import ConfigError
    from jepa_jax.sharding import make_global_batch
    from jepa_jax.train.loss_balance import loss_term_gradient_norms
    from jepa_jax.train.setup import build_trainer

    if (_RUN.value is None) == (flags.FLAGS.config is None):
        sys.exit("give exactly one of --config (fresh params) and --run (a training workdir)")
    if _BATCHES.value < 1:
        sys.exit(f"--batches={_BATCHES.value}: expected at least 1")
    try:
        if _RUN.value is not None:
            workdir, step = rundir.find_checkpoint(_RUN.value, _STEP.value)
            config = rundir.read_config(workdir)
            where = f"step {step} of {workdir}"
        else:
            config, step, where = loaded_config(), 0, "init"
        trainer = build_trainer(config)
    except ConfigError as e:
        sys.exit(str(e))
    it = iter(trainer.train_dataset())
    with jax.set_mesh(trainer.mesh):
        if _RUN.value is not None:
            ckpt = Checkpointer(workdir, every=1, keep=1_000_000, async_save=False)
            state = ckpt.restore(step, trainer.abstract_state(), None)
            ckpt.close()
        else:
            state, _ = trainer.create_state()
        batches = [make_global_batch(next(it), trainer.mesh) for _ in range(_BATCHES.value)]
        mean = loss_term_gradient_norms(
            trainer.objective, state["params"], state["target_params"], batches, step
        )
    print(f"loss terms at {where} ({_BATCHES.value} batches of {config.batch_size}):")
    modules = [k for k in mean["total"] if k != "loss"]  # encoder, predictor(, projector)
    header = "".join(f" {'|grad| ' + m:>17}" for m in modules)
    print(f"  {'term':<12} {'loss':>9}{header}")
    for term, m in mean.items():
        print(f"  {term:<12} {m['loss']:9.4f}" + "".join(f" {m[k]:17.4g}" for k in modules))
    last = [f"{t}_encoder_grad={m['encoder']:.6g}" for t, m in mean.items() if t != "total"]
    if "regularizer" in mean:
        ratio = mean["regularizer"]["encoder"] / max(mean["prediction"]["encoder"], 1e-30)
        print(f"the regularizer's encoder gradient is {ratio:.3g}x the prediction term's")
        last.append(f"regularizer_over_prediction={ratio:.6g}")
    print(" ".join(last))


if __name__ == "__main__":
    app.run(main)
