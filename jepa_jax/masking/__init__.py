"""Host-side (numpy) JEPA masks with fixed token counts, attached by the grain pipeline."""

from jepa_jax.masking.multiblock import BlockConfig, MaskError, calibrate_counts
from jepa_jax.masking.sampler import MaskSampler, MaskSpec, build_mask_sampler

__all__ = [
    "BlockConfig",
    "MaskError",
    "MaskSampler",
    "MaskSpec",
    "build_mask_sampler",
    "calibrate_counts",
]
