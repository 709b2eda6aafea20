"""Predictor weights in the reference layout (I-JEPA, V-JEPA, V-JEPA 2's RoPE predictor, V-JEPA
2.1's multi-level, context-head, modality-vector predictor): the spec read back from the
weights, and a round trip that predicts exactly what the original params predict."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from jepa_jax.convert.reference_predictor import (
    infer_predictor,
    predictor_from_json,
    predictor_params_to_reference,
    predictor_to_json,
    reference_to_predictor_params,
)
from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.init import init_predictor_params
from jepa_jax.models.predictor import Predictor
from jepa_jax.models.vit import token_grid

VIDEO = dict(patch_size=8, tubelet_size=2, input_shape=(4, 32, 32, 3))
IMAGE = dict(patch_size=8, tubelet_size=1, input_shape=(32, 32, 3))

FAMILIES = {
    # name: (encoder fields, predictor spec fields beyond the common ones)
    "ijepa": (dict(IMAGE, pos_embed="sincos_wh"), dict(num_mask_tokens=1)),
    "vjepa": (dict(VIDEO, uniform_power=False), dict(num_mask_tokens=2)),
    "vjepa2": (dict(VIDEO, pos_embed="rope"), dict(num_mask_tokens=3)),
    "vjepa21": (
        dict(VIDEO, pos_embed="rope_interleaved", rope_reference_grid=16, output_levels=(0, 1),
             image_tokenizer=True, modality_embedding=True),
        dict(num_mask_tokens=2, in_levels=2, context_head=True, modality_embedding=True),
    ),
}  # fmt: skip


def _family(name):
    enc_fields, pred_fields = FAMILIES[name]
    enc = EncoderConfig(width=32, depth=2, num_heads=2, mlp_dim=64, **enc_fields)
    levels = pred_fields.get("in_levels", 1)
    spec = Predictor(
        width=72 if enc.pos_embed.startswith("rope") else 24,  # 12 heads of 6 under RoPE
        depth=2,
        num_heads=12 if enc.pos_embed.startswith("rope") else enc.num_heads,
        mlp_dim=96,
        out_width=enc.width * levels,
        uniform_power=enc.uniform_power,
        pos_embed=enc.pos_embed,
        rope_reference_grid=enc.rope_reference_grid,
        **pred_fields,
    )
    return enc, spec


def _predict(predictor, enc, params, image=False):
    grid = token_grid((1,) + enc.input_shape, enc.patch_size, enc.tubelet_size)
    n = int(np.prod(grid))
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    ctx_idx, tgt_idx = np.sort(perm[:10])[None], np.sort(perm[10:16])[None]
    ctx = rng.normal(size=(1, 10, predictor.out_width)).astype(np.float32)
    mask_id = predictor.num_mask_tokens - 1
    return predictor.apply({"params": params}, ctx, ctx_idx, tgt_idx, grid, mask_id, image)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_reference_predictor_round_trip(family):
    enc, spec = _family(family)
    grid = token_grid((1,) + enc.input_shape, enc.patch_size, enc.tubelet_size)
    params = nn.meta.unbox(init_predictor_params(spec, jax.random.key(1), grid, 4, 4))
    # Non-zero mask tokens and modality vectors, so a swapped or dropped one shows.
    params["mask_tokens"] = np.asarray(
        jax.random.normal(jax.random.key(2), (spec.num_mask_tokens, spec.width))
    )
    sd = predictor_params_to_reference(params, spec, enc)
    assert ("predictor_pos_embed" in sd) == (not enc.pos_embed.startswith("rope"))
    assert ("predictor_embed.0.weight" in sd) == (spec.in_levels > 1)
    assert ("predictor_proj_context.weight" in sd) == spec.context_head
    assert sd["predictor_proj.weight"].shape == (spec.out_width, spec.width)
    assert sd["mask_tokens.0"].shape == (1, 1, spec.width)
    inferred = infer_predictor(sd, enc)
    assert inferred == spec
    back = reference_to_predictor_params(sd, inferred)
    for image in (False, True) if spec.modality_embedding else (False,):
        a, b = _predict(spec, enc, params, image), _predict(inferred, enc, back, image)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


def test_ijepa_single_mask_token_and_foreign_keys():
    enc, spec = _family("ijepa")
    grid = token_grid((1,) + enc.input_shape, enc.patch_size, enc.tubelet_size)
    params = nn.meta.unbox(init_predictor_params(spec, jax.random.key(0), grid, 4, 4))
    sd = predictor_params_to_reference(params, spec, enc)
    sd["mask_token"] = sd.pop("mask_tokens.0")  # I-JEPA's name
    assert infer_predictor(sd, enc).num_mask_tokens == 1
    np.testing.assert_array_equal(
        reference_to_predictor_params(sd, spec)["mask_tokens"][0], params["mask_tokens"][0]
    )
    with pytest.raises(ConfigError, match="keys a reference predictor does not"):
        reference_to_predictor_params({**sd, "head.weight": np.zeros(3)}, spec)
    bad = dict(sd, predictor_pos_embed=sd["predictor_pos_embed"] + 0.5)
    with pytest.raises(ConfigError, match="not the fixed sin-cos table"):
        infer_predictor(bad, enc)
    other = EncoderConfig(width=48, depth=2, num_heads=2, mlp_dim=64, **IMAGE)
    with pytest.raises(ConfigError, match="does not belong to this encoder"):
        infer_predictor(sd, other)
    assert predictor_from_json(predictor_to_json(spec), "x") == spec
    with pytest.raises(ConfigError, match="unknown fields \\['bogus'\\]"):
        predictor_from_json({**predictor_to_json(spec), "bogus": 1}, "x")


def test_import_carries_the_predictor_and_a_run_starts_from_it(tmp_path, monkeypatch):
    from conftest import tiny_video_config
    from safetensors.numpy import load_file

    from jepa_jax.convert import reference
    from jepa_jax.convert.reference import params_to_reference
    from jepa_jax.convert.sources import convert_source
    from jepa_jax.export.encoder_dir import (
        PREDICTOR_SAFETENSORS_FILE,
        read_predictor,
        write_encoder_dir,
    )
    from jepa_jax.train.setup import build_trainer

    config = tiny_video_config()
    trainer = build_trainer(config, jax.devices()[:1])
    state, _ = trainer.create_state(seed=5)
    params = jax.tree.map(lambda x: np.asarray(x) + 0.01, jax.device_get(state["params"]))
    enc_cfg = EncoderConfig.from_train_config(config)
    spec = trainer.predictor
    # A reference training checkpoint as torch.load returns it (numpy stands in for tensors).
    ref_encoder = params_to_reference(params["encoder"], enc_cfg)
    ref_predictor = predictor_params_to_reference(params["predictor"], spec, enc_cfg)
    checkpoint = {
        "target_encoder": {f"module.{k}": v for k, v in ref_encoder.items()},
        "predictor": {f"module.{k}": v for k, v in ref_predictor.items()},
    }
    monkeypatch.setattr(reference, "load_torch_checkpoint", lambda path: checkpoint)
    (tmp_path / "ref.pt").write_bytes(b"")
    cfg, enc_params, source, predictor = convert_source(
        str(tmp_path / "ref.pt"), num_heads=enc_cfg.num_heads, predictor_heads=spec.num_heads
    )
    assert predictor is not None and predictor[0] == spec
    out = write_encoder_dir(str(tmp_path / "export"), cfg, enc_params, source, predictor=predictor)
    stored_spec, stored = read_predictor(out)
    assert stored_spec == spec
    sd = load_file(f"{out}/{PREDICTOR_SAFETENSORS_FILE}")
    assert "predictor_embed.weight" in sd and "mask_tokens.1" in sd
    # A fresh run from the export: online and target encoder and predictor are its weights.
    for scan in (False, True):
        run = tiny_video_config()
        run.update(init_from=out)
        run.model.scan_layers = scan
        started = build_trainer(run, jax.devices()[:1])
        new_state, _ = started.create_state()
        got = jax.device_get(new_state)
        if scan:
            from jepa_jax.models.layers import unstack_layers

            got = jax.tree.map(lambda x: x, got)
            for part, name in (
                ("params", "encoder"),
                ("target_params", "encoder"),
                ("params", "predictor"),
            ):
                got[part][name] = unstack_layers(got[part][name])
        for part, name, want in (
            ("params", "encoder", params["encoder"]),
            ("target_params", "encoder", params["encoder"]),
            ("params", "predictor", params["predictor"]),
        ):
            jax.tree.map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                got[part][name],
                want,
            )
    # Weights of another model are a one-line error naming the difference.
    bigger = tiny_video_config()
    bigger.update(init_from=out)
    bigger.model.predictor.depth = 2
    with pytest.raises(
        ConfigError, match="predictor weights of .* does not match the run's predictor"
    ) as e:
        build_trainer(bigger, jax.devices()[:1]).create_state()
    assert "\n" not in str(e.value)
    bigger.init_predictor = False  # the encoder alone still fits
    build_trainer(bigger, jax.devices()[:1]).create_state()
