"""Export and import: `jepa-jax export` -> `load_encoder` reproduces the training-time target
encoder; the PyTorch-named safetensors re-import to the same weights; sin-cos layouts are
detected; bad input (another model size, missing files) is a clear one-line error."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_image_config, tiny_video_config
from helpers import cli

import jepa_jax
from jepa_jax import rundir
from jepa_jax.checkpoint import Checkpointer
from jepa_jax.convert.reference import infer_encoder_config, params_to_reference
from jepa_jax.convert.sources import convert_source
from jepa_jax.errors import ConfigError
from jepa_jax.export.encoder_dir import (
    PARAMS_DIR,
    SAFETENSORS_FILE,
    read_encoder_dir,
    read_predictor,
    write_encoder_dir,
)
from jepa_jax.export.target_encoder import restore_target_encoder
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.inputs import normalize_pixels
from jepa_jax.models.layers import unstack_layers
from jepa_jax.models.pos_embed import sincos_table
from jepa_jax.train.setup import build_trainer


def one_line_error(out, command):
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith(f"jepa-jax {command}: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A training workdir as `jepa-jax train` leaves it (config.json + an orbax checkpoint at
    step 3) for a scanned-layer V-JEPA whose EMA target differs from the online encoder.
    Returns (workdir, trainer, state)."""
    path = str(tmp_path_factory.mktemp("run"))
    config = tiny_video_config()
    config.model.scan_layers = True  # the export must unstack the layers
    trainer = build_trainer(config, jax.devices()[:1])
    with jax.set_mesh(trainer.mesh):
        state, _ = trainer.create_state()
    noise = jax.tree.map(
        lambda a: 0.05 * jnp.sin(jnp.arange(a.size).reshape(a.shape)), state["params"]["encoder"]
    )
    state["target_params"]["encoder"] = jax.tree.map(jnp.add, state["params"]["encoder"], noise)
    state["step"] = jnp.asarray(3, jnp.int32)
    rundir.write_config(path, config)
    ckpt = Checkpointer(path, every=1, keep=1, async_save=False)
    ckpt.save(3, state, iter(trainer.train_dataset()))
    ckpt.close()
    return path, trainer, state


def test_export_then_load_encoder_gives_the_training_target_features(workdir, tmp_path):
    path, trainer, state = workdir
    out = tmp_path / "export"
    result = cli("export", f"--workdir={path}", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "at step 3" in result.stdout
    assert sorted(os.listdir(out)) == [
        "encoder_config.json",
        "model.safetensors",
        "params",
        "predictor",
        "predictor.safetensors",
        "predictor_config.json",
    ]
    info = json.loads((out / "encoder_config.json").read_text())
    assert info["source"]["step"] == 3 and info["encoder"]["depth"] == 2
    # The run's predictor rides along (unscanned), so init_from can continue from both.
    predictor, pred_params = read_predictor(str(out))
    assert predictor.depth == trainer.predictor.depth and not predictor.scan
    want = unstack_layers(jax.device_get(state["params"]["predictor"]))
    jax.tree.map(np.testing.assert_array_equal, pred_params, want)

    apply_fn, params = jepa_jax.load_encoder(str(out))
    pixels = np.asarray(next(iter(trainer.train_dataset()))["pixels"])
    got = np.asarray(apply_fn(params, pixels))
    x = normalize_pixels(jnp.asarray(pixels))
    with jax.set_mesh(trainer.mesh):
        target = jax.jit(trainer.objective.target_features)(state["target_params"], x)
        online = jax.jit(lambda p, x: trainer.encoder.apply({"params": p}, x))(
            state["params"]["encoder"], x
        )
    assert got.shape == (len(pixels), 128, 32)
    np.testing.assert_allclose(got, target, rtol=1e-5, atol=1e-5)
    assert np.abs(got - np.asarray(online)).max() > 1e-2  # it is the EMA target, not the online


def test_safetensors_reimport_and_sincos_layout_detection(workdir, tmp_path):
    path, _, _ = workdir
    _, cfg, params, _ = restore_target_encoder(path)
    out = write_encoder_dir(str(tmp_path / "e"), cfg, params, {"kind": "test"})
    cfg2, params2, info, _ = convert_source(
        os.path.join(out, SAFETENSORS_FILE), num_frames=4, num_heads=cfg.num_heads
    )
    assert cfg2 == cfg and info["format"] == "V-JEPA reference"
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    # Other layouts are told apart by the stored pos_embed: the I-JEPA 2D table (column
    # channels first) and V-JEPA's 3D table without uniform_power.
    for kwargs in (
        dict(input_shape=(32, 32, 3), pos_embed="sincos_wh", tubelet_size=1),
        dict(input_shape=(4, 32, 32, 3), uniform_power=False),
    ):
        other = EncoderConfig(**{**vars(cfg), **kwargs})
        if len(other.input_shape) == 3:
            kernel = params["patch_embed"]["kernel"][:48]  # an image encoder's patch kernel
            p = {**params, "patch_embed": {**params["patch_embed"], "kernel": kernel}}
        else:
            p = params
        sd = params_to_reference(p, other)
        assert infer_encoder_config(sd, num_frames=4, num_heads=cfg.num_heads) == other
    sd = params_to_reference(params, cfg)
    sd["pos_embed"] = sd["pos_embed"] + 0.01  # learned / fine-tuned: not a fixed table
    with pytest.raises(ConfigError, match="matches none of the fixed sin-cos layouts"):
        infer_encoder_config(sd, num_frames=4, num_heads=cfg.num_heads)
    with pytest.raises(ConfigError, match="is not a ViT-large: it has width 32 .expected 1024."):
        convert_source(os.path.join(out, SAFETENSORS_FILE), num_heads=2, size="large")
    # The sin-cos pos_embed written for the reference model is its fixed table.
    np.testing.assert_allclose(sd["pos_embed"][0] - 0.01, sincos_table(32, (2, 8, 8)), atol=1e-6)


def test_checkpoint_of_another_model_size_is_a_one_line_error(workdir, tmp_path):
    path, _, _ = workdir
    other = tmp_path / "other"
    shutil.copytree(path, other)
    config = json.loads((other / rundir.CONFIG_FILE).read_text())
    config["model"]["encoder"]["width"] = 48  # config.json now describes another size
    (other / rundir.CONFIG_FILE).write_text(json.dumps(config))
    result = cli("export", f"--workdir={other}", f"--out={tmp_path / 'x'}")
    line = one_line_error(result, "export")
    assert "the checkpoint at step 3 does not match the model of" in line
    assert (
        "width 48" in line and "(checkpoint vs model) differ for norm/bias (32,) vs (48,)" in line
    )
    assert not (tmp_path / "x").exists()  # nothing written


def test_missing_files_and_overwrite_are_clear_errors(workdir, tmp_path):
    path, _, _ = workdir
    with pytest.raises(ConfigError, match="checkpoint path not found"):
        restore_target_encoder(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="encoder directory not found"):
        jepa_jax.load_encoder(str(tmp_path / "nope"))
    no_config = shutil.copytree(path, tmp_path / "no_config")
    os.remove(no_config / rundir.CONFIG_FILE)
    with pytest.raises(ConfigError, match="not a jepa-jax training workdir"):
        restore_target_encoder(str(no_config))
    with pytest.raises(ConfigError, match="weights not found"):
        convert_source(str(tmp_path / "vitl.pt"))
    _, cfg, params, _ = restore_target_encoder(path, step=3)
    with pytest.raises(ConfigError, match="no checkpoint at step 7"):
        restore_target_encoder(path, step=7)
    out = write_encoder_dir(str(tmp_path / "e"), cfg, params, {})
    with pytest.raises(ConfigError, match="exists and is not empty; pass --overwrite"):
        write_encoder_dir(out, cfg, params, {})
    write_encoder_dir(out, cfg, params, {"again": True}, overwrite=True)
    assert json.loads(open(os.path.join(out, "encoder_config.json")).read())["source"] == {
        "again": True
    }
    assert [n for n in os.listdir(tmp_path) if n.startswith(".e.")] == []  # no temp dirs left
    # An export whose params are of another size than its encoder_config.json.
    bigger = EncoderConfig(**{**vars(cfg), "mlp_dim": 96})
    with open(os.path.join(out, "encoder_config.json"), "w") as f:
        json.dump(bigger.to_json(), f)
    with pytest.raises(
        ConfigError, match=r"\(params vs config\) differ for .*mlp/fc1/bias \(64,\) vs \(96,\)"
    ):
        read_encoder_dir(out)
    shutil.rmtree(os.path.join(out, PARAMS_DIR))
    with pytest.raises(ConfigError, match="is incomplete"):
        read_encoder_dir(out)
    # A truncated JSON file (a copy cut short) is a one-line error naming it.
    with open(os.path.join(out, "encoder_config.json"), "w") as f:
        f.write('{"width": 3')
    with pytest.raises(ConfigError, match=r"encoder_config.json' is not valid JSON"):
        read_encoder_dir(out)
    (no_config / rundir.CONFIG_FILE).write_text("{")
    with pytest.raises(ConfigError, match=r"config.json' is not valid JSON"):
        restore_target_encoder(str(no_config))


def test_image_encoder_from_a_training_config():
    cfg = EncoderConfig.from_train_config(tiny_image_config())
    assert cfg.input_shape == (32, 32, 3) and not cfg.is_video and cfg.patch_dim == 48
    assert EncoderConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="has format 'other'"):
        EncoderConfig.from_json({"format": "other"})


def test_run_layout_paths_resolve_to_the_workdir_and_step(tmp_path):
    # A workdir, its checkpoints/ directory and a checkpoints/<step> directory all name the run.
    for step in (3, 7):
        os.makedirs(tmp_path / "checkpoints" / str(step) / rundir.STATE_ITEM)
    os.makedirs(tmp_path / "checkpoints" / "9.orbax-checkpoint-tmp")  # an unfinished save
    work, ckpts = str(tmp_path), str(tmp_path / "checkpoints")
    step3 = str(tmp_path / "checkpoints" / "3")
    assert rundir.run_root(work) == rundir.run_root(ckpts) == rundir.run_root(step3) == work
    assert rundir.find_checkpoint(work) == rundir.find_checkpoint(ckpts) == (work, 7)
    assert rundir.find_checkpoint(step3) == (work, 3)
    assert rundir.find_checkpoint(work, 3) == (work, 3)
    with pytest.raises(ConfigError, match="step 7 asked for, but .* is the step-3 one"):
        rundir.find_checkpoint(step3, 7)
    with pytest.raises(ConfigError, match=r"no checkpoint at step 5 .* it has steps \[3, 7\]"):
        rundir.find_checkpoint(work, 5)
