"""jepa-jax: JEPA pretraining, evaluation and planning in JAX/Flax."""


def load_encoder(path: str):
    """`(apply_fn, params)` of an export directory (`jepa-jax export` / `jepa-jax import`).

    `apply_fn(params, pixels)` maps uint8 [B, (T,) H, W, 3] pixels (or normalised floats) to
    [B, N, D] token features. See jepa_jax.export.encoder_dir.
    """
    from jepa_jax.export.encoder_dir import load_encoder as _load  # keeps `import jepa_jax` light

    return _load(path)
