"""The analytic FLOP count agrees with XLA's cost analysis on an unscanned step."""

import jax
import pytest
from conftest import tiny_video_config

from jepa_jax.hardware import chip_for, compiled_flops
from jepa_jax.train.flops import jepa_step_flops
from jepa_jax.train.setup import build_trainer


@pytest.mark.parametrize(
    "joint, projector",
    [(False, ()), (True, ()), (False, (512, 128))],
    ids=["video", "image+video", "video+projector"],
)
def test_analytic_flops_match_xla_cost_analysis(devices, joint, projector):
    config = tiny_video_config()
    if projector:  # the regularizer's token projector, trained with the context encoder
        config.regularizer.update(type="sigreg", projector=projector)
    if joint:  # V-JEPA 2.1's image stream beside the clips
        config.model.encoder.update(image_tokenizer=True, modality_embedding=True)
        config.images.update(batch_size=16)
    # Wide enough that matmuls dominate, as in real models (XLA also counts elementwise work).
    config.model.encoder.update(width=128, num_heads=2, mlp_dim=512)
    config.model.predictor.update(width=64, num_heads=2)
    trainer = build_trainer(config, devices=devices[:1])
    with jax.set_mesh(trainer.mesh):
        state = trainer.abstract_state()
        batch = trainer.abstract_batch()
        compiled = (
            trainer.make_step(jax.tree.map(lambda a: a.sharding, state), batch)
            .lower(state, batch)
            .compile()
        )
    analytic, xla = jepa_step_flops(trainer), compiled_flops(compiled)
    if joint:
        assert trainer.image_sampler is not None
    assert (trainer.objective.projector is not None) == bool(projector)
    assert 0.85 < analytic / xla <= 1.0, (analytic, xla)


def test_peak_table_lookup():
    assert chip_for("TPU v5 lite").name == "TPU v5e"
    assert chip_for("TPU v5").hbm_gib == 95
    assert chip_for("NVIDIA H100 80GB HBM3").peak_bf16_tflops == 989
    assert chip_for("NVIDIA H200").name == "NVIDIA H200"
    assert chip_for("weird accelerator") is None
