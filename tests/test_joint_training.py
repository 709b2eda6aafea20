"""V-JEPA 2.1's joint image + video training: the image tokenizer and modality vectors of the
encoder and predictor, the joint batches, the weighted two-stream objective against its parts,
one compilation, the configuration errors and the reference layout of the new weights."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, tiny_video_config
from flax import linen as nn

from jepa_jax.convert.reference import (
    infer_encoder_config,
    params_to_reference,
    reference_to_params,
)
from jepa_jax.data import pipeline
from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.init import init_encoder_params
from jepa_jax.models.vit import patchify
from jepa_jax.sharding import make_global_batch
from jepa_jax.train.setup import build_trainer


def joint_config(image_batch=8):
    c = tiny_video_config()
    c.model.encoder.update(image_tokenizer=True, modality_embedding=True)
    c.images.batch_size = image_batch
    c.images.data.update(image_size=32, num_examples=256)
    return c


@pytest.fixture(scope="module")
def joint():
    trainer = build_trainer(joint_config())
    it = iter(trainer.train_dataset())
    with jax.set_mesh(trainer.mesh):
        batches = [make_global_batch(next(it), trainer.mesh) for _ in range(3)]
        state, shardings = trainer.create_state()
    return trainer, batches, state, shardings


def _encoder_cfg(**kw):
    return EncoderConfig(width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8,
                         tubelet_size=2, input_shape=(4, 32, 32, 3), **kw)  # fmt: skip


def test_one_frame_clips_go_through_the_image_tokenizer():
    cfg = _encoder_cfg(image_tokenizer=True, modality_embedding=True)
    module = cfg.build()
    params = nn.meta.unbox(init_encoder_params(module, jax.random.key(0), cfg.input_shape))
    # Init on video creates the image tokenizer too: a tubelet-1 kernel of p*p*3 rows.
    assert params["patch_embed_img"]["kernel"].shape == (8 * 8 * 3, 32)
    assert params["patch_embed"]["kernel"].shape == (2 * 8 * 8 * 3, 32)
    assert set(params["modality"]) == {"img_mod_embed", "video_mod_embed"}
    assert float(jnp.std(params["modality"]["img_mod_embed"])) < 1e-5  # N(0, 1e-6^2)
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.normal(size=(2, 1, 32, 32, 3)), jnp.float32)
    video = jnp.asarray(rng.normal(size=(2, 4, 32, 32, 3)), jnp.float32)
    apply = lambda p, x: np.asarray(module.apply({"params": p}, x))
    assert apply(params, image).shape == (2, 16, 32)  # a 1 x 4 x 4 grid
    assert apply(params, video).shape == (2, 32, 32)  # 2 x 4 x 4
    # Each input reads its own tokenizer and modality vector, and only those.
    for name, leaf, reads_image in (
        ("patch_embed_img", "kernel", True),
        ("patch_embed", "kernel", False),
    ):
        moved = jax.tree.map(lambda a: a, params)
        moved[name] = {**params[name], leaf: params[name][leaf] + 0.5}
        assert np.allclose(apply(moved, image), apply(params, image)) != reads_image
        assert np.allclose(apply(moved, video), apply(params, video)) == reads_image
    for vector, reads_image in (("img_mod_embed", True), ("video_mod_embed", False)):
        moved = {**params, "modality": {**params["modality"], vector: jnp.ones(32)}}
        assert np.allclose(apply(moved, image), apply(params, image)) != reads_image
        assert np.allclose(apply(moved, video), apply(params, video)) == reads_image
    # Without the tokenizer a one-frame clip is a video the tubelet cannot split: an error.
    plain = _encoder_cfg().build()
    plain_params = init_encoder_params(plain, jax.random.key(0), cfg.input_shape)
    with pytest.raises(ValueError, match="not divisible"):
        plain.apply({"params": nn.meta.unbox(plain_params)}, image)


def test_joint_batches_hold_both_streams_and_are_a_function_of_the_step(joint):
    trainer, batches, _, _ = joint
    b = batches[0]
    assert b["pixels"].shape == (8, 4, 32, 32, 3)
    assert b["image"]["pixels"].shape == (8, 1, 32, 32, 3)
    (image_mask,) = b["image"]["masks"]
    assert image_mask["context"].shape[0] == 8
    # The image masks live on the 1 x 8 x 8 grid of a tubelet-1 patch-4 image.
    assert int(np.max(image_mask["target"])) < 64
    assert trainer.mask_names == ["long_range", "short_range", "image_short_range"]
    # A fresh stream gives the same batches; the image stream is not the video stream's frames.
    again = next(iter(trainer.train_dataset()))
    np.testing.assert_array_equal(again["image"]["pixels"], np.asarray(b["image"]["pixels"]))
    np.testing.assert_array_equal(again["pixels"], np.asarray(b["pixels"]))
    # Resuming from a saved position continues the same joint stream.
    it = iter(trainer.train_dataset())
    next(it)
    state = it.get_state()
    second = next(it)
    resumed = iter(trainer.train_dataset())
    resumed.set_state(state)
    jax.tree.map(np.testing.assert_array_equal, next(resumed), second)


def test_the_loss_is_the_share_weighted_sum_of_the_two_streams(joint):
    trainer, batches, state, _ = joint
    obj, batch = trainer.objective, batches[0]
    assert obj.image_loss_share == 0.5
    params, target = state["params"], state["target_params"]
    with jax.set_mesh(trainer.mesh):
        loss, aux = jax.jit(obj)(params, target, batch)
        video, video_aux = jax.jit(obj.stream_loss)(params, target, batch)
        image, image_aux = jax.jit(lambda p, t, b: obj.stream_loss(p, t, b, 0, True))(
            params, target, batch["image"]
        )
    assert float(loss) == pytest.approx(0.5 * float(video) + 0.5 * float(image), rel=1e-5)
    np.testing.assert_allclose(
        aux["loss_per_mask"],
        np.concatenate([video_aux["loss_per_mask"], image_aux["loss_per_mask"]]),
        rtol=1e-5,
    )
    assert float(aux["metrics"]["loss_image"]) == pytest.approx(float(image), rel=1e-5)
    # The image stream differs from feeding the same images through the video path.
    assert float(image) != pytest.approx(float(video), rel=1e-3)


def test_joint_steps_train_both_tokenizers_and_compile_once(joint):
    trainer, batches, state, shardings = joint
    with jax.set_mesh(trainer.mesh):
        before = jax.device_get(state["params"]["encoder"])
        step = trainer.make_step(shardings, batches[0])
        for b in batches:
            state, metrics = step(state, b)
        assert step._cache_size() == 1
    after = jax.device_get(state["params"]["encoder"])
    for name in ("patch_embed", "patch_embed_img"):
        assert not np.allclose(after[name]["kernel"], before[name]["kernel"])
    assert np.isfinite(float(metrics["loss_image_short_range"]))
    assert set(jax.device_get(state["params"]["predictor"]["modality"])) == {
        "img_mod_embed",
        "video_mod_embed",
    }


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c.model.encoder.update(image_tokenizer=False),
            r"images.batch_size=8 .*tokenizer",
        ),
        (lambda c: c.images.update(loss_share=1.0), r"images.loss_share=1.0 .*\(0, 1\)"),
        (lambda c: c.images.data.update(name="moving_shapes"), r"images.data.name=.*image source"),
        (lambda c: c.images.update(batch_size=-1), r"images.batch_size=-1 .*>= 0"),
        (lambda c: c.model.encoder.update(tubelet_size=1), r"image_tokenizer=True needs a video"),
    ],
)
def test_bad_joint_settings_are_one_line_errors(edit, message):
    c = joint_config()
    edit(c)
    with pytest.raises(ConfigError, match=message) as e:
        build_trainer(c, jax.devices()[:1])
    assert "\n" not in str(e.value)


def test_image_batch_must_split_over_the_processes():
    with pytest.raises(ValueError, match="batch size 6 of 'shapes' .* process count 4"):
        c = joint_config(image_batch=6)
        trainer = build_trainer(c, jax.devices()[:1])
        pipeline.train_dataset(c, trainer.sampler, 0, 4, trainer.image_sampler)


def test_reference_layout_of_the_image_tokenizer_and_modality_vectors():
    cfg = _encoder_cfg(image_tokenizer=True, modality_embedding=True, pos_embed="rope_interleaved",
                       rope_reference_grid=16, output_levels=(0, 1))  # fmt: skip
    module = cfg.build()
    params = nn.meta.unbox(init_encoder_params(module, jax.random.key(3), cfg.input_shape))
    sd = params_to_reference(params, cfg)
    assert sd["patch_embed_img.proj.weight"].shape == (32, 3, 1, 8, 8)  # Conv3d, tubelet 1
    assert sd["img_mod_embed"].shape == sd["video_mod_embed"].shape == (1, 1, 32)
    inferred = infer_encoder_config(sd, num_heads=2, image_size=32, num_frames=4)
    assert inferred.image_tokenizer and inferred.modality_embedding
    back = reference_to_params(sd, inferred)
    image = jax.random.normal(jax.random.key(4), (1, 1, 32, 32, 3))
    np.testing.assert_allclose(
        module.apply({"params": back}, image), module.apply({"params": params}, image), atol=1e-5
    )
    # The conv weight is the tokenizer: the [D, C, 1, p, p] convolution of a frame at a patch
    # equals our Dense on that patch flattened.
    frame = np.asarray(image[0, 0])
    w = sd["patch_embed_img.proj.weight"][:, :, 0]
    conv = np.einsum("dchw,hwc->d", w, frame[:8, 8:16]) + sd["patch_embed_img.proj.bias"]
    tokens = np.asarray(patchify(image[:, 0], 8, 1))[0]  # [16, 192], row-major grid
    ours = tokens[1] @ params["patch_embed_img"]["kernel"] + params["patch_embed_img"]["bias"]
    np.testing.assert_allclose(ours, conv, rtol=1e-4, atol=1e-5)


def test_vjepa21_distilled_checkpoints_keep_their_encoder_under_ema_encoder():
    from jepa_jax.convert.reference import encoder_state_dict

    sd = {"patch_embed.proj.weight": np.zeros((4, 3, 2, 8, 8)), "blocks.0.norm1.weight": np.ones(4)}
    got = encoder_state_dict({"ema_encoder": {f"module.{k}": v for k, v in sd.items()}, "opt": {}})
    assert sorted(got) == sorted(sd)
    with pytest.raises(ConfigError, match="no 'target_encoder' or 'ema_encoder' or 'encoder'"):
        encoder_state_dict({"opt": {}})


def test_images_are_probed_through_the_image_tokenizer(tmp_path):
    from conftest import load_config

    from jepa_jax.eval.suite import as_encoder_input, run_eval
    from jepa_jax.export.encoder_dir import write_encoder_dir

    cfg = _encoder_cfg(image_tokenizer=True, modality_embedding=True)
    images = np.zeros((3, 32, 32, 3), np.uint8)
    assert as_encoder_input(images, cfg, 4).shape == (3, 1, 32, 32, 3)  # one frame, tubelet 1
    assert as_encoder_input(images, _encoder_cfg(), 4).shape == (3, 4, 32, 32, 3)  # repeated
    params = nn.meta.unbox(init_encoder_params(cfg.build(), jax.random.key(0), cfg.input_shape))
    export = write_encoder_dir(str(tmp_path / "export"), cfg, params, {})
    config = load_config(os.path.join(REPO, "configs", "probes", "moving_shapes.py"), "runlocal")
    config.data.update(name="shapes", image_size=32)
    config.probe.update(
        num_train=48, num_test=24, probes=("linear", "dense"), baselines=("pixels",)
    )
    config.probe.linear.steps = 100
    results = run_eval(config, export, str(tmp_path / "eval"), log=lambda s: None)
    assert results["views"]["clip_frames"] == 1
    for name in ("trained", "pixels"):
        assert set(results["encoders"][name]) >= {"linear", "dense"}
