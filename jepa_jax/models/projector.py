"""The collapse regularizer's projector: a one-hidden-layer MLP applied to every token.

LeJEPA and eb_jepa apply SIGReg / VICReg to a projection of the encoder's output rather than to
the output itself; the probed representation then need not be an isotropic Gaussian, only an
MLP of it (the encoder keeps structure the probes read, the "guillotine" effect of SSL
projectors). The projector is a training-only head, like the predictor: exports and probes use
the encoder alone.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jepa_jax.models.layers import gelu, layer_norm, zeros_init


class TokenProjector(nn.Module):
    """[..., D] -> Dense(hidden) -> LayerNorm -> GELU (tanh form) -> Dense(out, no bias)."""

    hidden: int
    out: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """z [..., D] (the encoder's tokens) -> [..., out]."""
        kernel = nn.initializers.lecun_normal()
        h = nn.Dense(
            self.hidden,
            dtype=self.dtype,
            kernel_init=nn.with_logical_partitioning(kernel, ("embed", "mlp")),
            bias_init=zeros_init(("mlp",)),
            name="hidden",
        )(z)
        h = layer_norm("norm", self.dtype, axis="mlp")(h)
        h = gelu(h, approximate=True)
        return nn.Dense(
            self.out,
            use_bias=False,
            dtype=self.dtype,
            kernel_init=nn.with_logical_partitioning(kernel, ("mlp", None)),
            name="out",
        )(h)
