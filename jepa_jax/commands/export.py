"""`jepa-jax export --workdir=DIR --out=OUT [--step=N] [--overwrite]`

Writes the target (EMA) encoder of a training run, the one used downstream, as an export
directory: OUT/params (orbax params-only checkpoint), OUT/encoder_config.json (rebuilds the
model) and OUT/model.safetensors (PyTorch reference key names), with the run's predictor beside
it (OUT/predictor*, so `--config.init_from=OUT` continues from both). Load it with
`jepa_jax.load_encoder(OUT)`, or probe it with `jepa-jax eval --checkpoint=OUT`.
"""

from __future__ import annotations

from absl import flags

from jepa_jax.commands.common import define_export_flags, directory_flag, start_command

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints/).")
_OUT, _OVERWRITE = define_export_flags()
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    start_command(argv)
    import jax

    from jepa_jax.errors import ConfigError
    from jepa_jax.export.encoder_dir import write_encoder_dir
    from jepa_jax.export.target_encoder import restore_predictor, restore_target_encoder

    workdir = directory_flag("workdir")
    config, cfg, params, step = restore_target_encoder(workdir, _STEP.value)
    source = {"kind": "jepa-jax workdir", "workdir": workdir, "step": step}
    try:
        predictor = restore_predictor(workdir, step, config, cfg)
    except ConfigError as e:  # the encoder is what downstream needs: export it anyway
        print(f"note: the predictor is not exported: {e}")
        predictor = None
    out = write_encoder_dir(
        _OUT.value, cfg, params, source, overwrite=_OVERWRITE.value, predictor=predictor
    )
    n = sum(int(x.size) for x in jax.tree.leaves(params))
    print(
        f"exported the target encoder of {workdir} at step {step} ({n / 1e6:.2f}M params, "
        f"width {cfg.width}, depth {cfg.depth}) to {out}"
    )
