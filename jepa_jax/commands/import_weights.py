"""`jepa-jax import --source=PATH --out=DIR [--entry=...] [--num_frames=N] [--image_size=S] ...`

Converts released PyTorch weights into an export directory (as `jepa-jax export` writes), so
`jepa_jax.load_encoder(DIR)` and `jepa-jax eval --checkpoint=DIR` work on them:

  * a reference checkpoint of I-JEPA (`.pth.tar`, keys under `module.`), V-JEPA or V-JEPA 2
    (`.pt`; 3D RoPE when it stores no pos_embed): the `target_encoder` entry by default
    (--entry=encoder for the other one), and its `predictor` entry when it has one (written
    beside the encoder; `config.init_from` starts a training run from both); reading these
    needs PyTorch;
  * a reference-layout `.safetensors` file (e.g. model.safetensors of a jepa-jax export);
  * a Hugging Face `IJepa` / `VJEPA2` model directory (config.json + model.safetensors): only
    the encoder is converted.

The input size is read from the checkpoint where it is stored (sin-cos pos_embed, Hugging Face
config); otherwise give --image_size (and --num_frames for video, default 16).
"""

from __future__ import annotations

from absl import flags

from jepa_jax.commands.common import define_export_flags, start_command

_SOURCE = flags.DEFINE_string("source", None, "Checkpoint file or Hugging Face model directory.")
_OUT, _OVERWRITE = define_export_flags()
# convert_source's options, one flag each (same names).
_CONVERT_FLAGS = (
    flags.DEFINE_string(
        "entry",
        None,
        "Entry of a reference checkpoint to read (default: target_encoder, else ema_encoder, "
        "else encoder).",
    ),
    flags.DEFINE_integer("num_frames", None, "Frames per clip of a video encoder."),
    flags.DEFINE_integer("image_size", None, "Input side in pixels (RoPE checkpoints)."),
    flags.DEFINE_integer("num_heads", None, "Attention heads (default: the preset's)."),
    flags.DEFINE_string("size", None, "Expected encoder preset (e.g. large): checked."),
    flags.DEFINE_integer(
        "predictor_heads",
        None,
        "Predictor attention heads (default: 12 under RoPE, else the encoder's).",
    ),
)
flags.mark_flags_as_required(["source"])


def main(argv: list[str]) -> None:
    start_command(argv)
    from jepa_jax.convert.sources import convert_source
    from jepa_jax.export.encoder_dir import write_encoder_dir

    options = {flag.name: flag.value for flag in _CONVERT_FLAGS}
    cfg, params, source, predictor = convert_source(_SOURCE.value, **options)
    out = write_encoder_dir(
        _OUT.value, cfg, params, source, overwrite=_OVERWRITE.value, predictor=predictor
    )
    skipped = source.get("skipped_keys", [])
    note = f"; skipped {len(skipped)} non-encoder keys ({skipped[0]}, ...)" if skipped else ""
    if predictor is not None:
        spec = predictor[0]
        note += (
            f"; and its predictor (width {spec.width}, depth {spec.depth}, {spec.num_heads} "
            f"heads, {spec.num_mask_tokens} mask tokens, {spec.in_levels} level(s))"
        )
    print(
        f"imported a {source['format']} encoder (width {cfg.width}, depth {cfg.depth}, "
        f"{cfg.num_heads} heads, pos_embed {cfg.pos_embed}, input {cfg.input_shape}) from "
        f"{_SOURCE.value} to {out}{note}"
    )
