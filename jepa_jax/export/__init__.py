"""Frozen encoders out of (and into) jepa-jax: export directories and `load_encoder`."""

from jepa_jax.export.encoder_dir import load_encoder, read_encoder_dir, write_encoder_dir

__all__ = ["load_encoder", "read_encoder_dir", "write_encoder_dir"]
