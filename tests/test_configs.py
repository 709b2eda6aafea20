"""Every config in configs/ loads and builds; the recipes carry the reference values; the
file-backed configs smoke-train through the CLI on data the test writes."""

import glob
import json
import os

import jax
import pytest
from conftest import REPO, load_config
from helpers import cli, read_losses
from media import write_index_video, write_mnist_npz, write_truncated_video

from jepa_jax import config_lib
from jepa_jax.errors import ConfigError
from jepa_jax.train.loop import train
from jepa_jax.train.setup import build_trainer
from jepa_jax.world_model.setup import build_world_model_trainer

CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
# Arguments that make each config buildable without data (building reads no files).
ARGS = {
    "ijepa_vith14_in1k.py": "train=/data/imagenet/train",
    "vjepa_vitl16.py": "videos=/data/k710.csv",
    "vjepa_video_folder.py": "videos=/data/videos",
    "vjepa_moving_mnist.py": "mnist=/data/mnist.npz",
    "vjepa21_vitg16.py": "videos=/data/mix.csv",
}


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_loads_and_builds(path):
    name = os.path.basename(path)
    for arg in [ARGS.get(name)] + (["runlocal"] if name in ARGS else []):
        config = load_config(path, arg)
        config_lib.validate_config(config, num_devices=1)
        if config.method == "world_model":  # jepa-jax train dispatches these to their own loop
            trainer = build_world_model_trainer(config)
            assert jax.tree.leaves(jax.eval_shape(trainer.init_fn, jax.random.key(0)))
            continue
        trainer = build_trainer(config)
        assert trainer.example_shape[-1] == 3
        assert len(trainer.sampler.specs) >= 1


def test_default_masks_predict_the_future_and_vjepa_masks_differ_only_there():
    path = os.path.join(REPO, "configs", "default.py")
    default, vjepa = load_config(path), load_config(path, "vjepa_masks")
    trainer = build_trainer(default)
    assert [s.name for s in trainer.sampler.specs] == ["future", "short_range"]
    future_spec = trainer.sampler.specs[0].blocks
    assert future_spec.full_complement and future_spec.max_temporal_keep == 0.5
    assert sorted(vjepa.mask.blocks) == ["long_range", "short_range"]
    del default["mask"], vjepa["mask"]
    assert default.to_dict() == vjepa.to_dict()


def test_a_saved_run_config_keeps_its_own_mask_groups_and_gains_new_settings(tmp_path):
    """read_config fills settings added since a run started, but a mask group is a name the run
    chose: the default job's groups ("future", "short_range") must not gain the base config's
    "long_range" (which made a restored predictor expect 3 mask tokens where it has 2)."""
    from jepa_jax import rundir

    default_config = os.path.join(REPO, "configs", "default.py")
    saved = json.loads(json.dumps(load_config(default_config).to_dict(), default=list))
    del saved["mask"]["blocks"]["short_range"]["max_temporal_keep"]  # as an older run's
    del saved["probe"]["linear"]["last_k_blocks"]
    (tmp_path / rundir.CONFIG_FILE).write_text(json.dumps(saved))
    config = rundir.read_config(str(tmp_path))
    assert sorted(config.mask.blocks) == ["future", "short_range"]
    assert config.mask.blocks.future.max_temporal_keep == 0.5
    assert config.mask.blocks.short_range.max_temporal_keep == 1.0  # filled at its default
    assert config.probe.linear.last_k_blocks == 1  # a new setting at its default
    # JSON's lists read back as the config file's tuples.
    assert config.probe.probes == tuple(load_config(default_config).probe.probes)
    assert isinstance(config.probe.probes, tuple)
    assert (
        build_trainer(config).sampler.describe()
        == build_trainer(load_config(default_config)).sampler.describe()
    )


def test_each_method_carries_its_own_sections_only():
    jepa = config_lib.base_config()
    wm = config_lib.base_config("world_model")
    shared = {"seed", "total_steps", "batch_size", "model", "optim", "mesh", "method"}
    assert shared <= set(jepa) and shared <= set(wm)
    for method, config in (("jepa", jepa), ("world_model", wm)):
        assert config.method == method
        own = set(config_lib.METHOD_SECTIONS[method])
        other = {k for m, ks in config_lib.METHOD_SECTIONS.items() if m != method for k in ks}
        assert own <= set(config) and not other & set(config), (method, sorted(config))
        config_lib.validate_config(config, num_devices=1)
    # The shipped configs too: no planning keys in a JEPA run, no masks in a world-model run.
    assert "plan" not in load_config(os.path.join(REPO, "configs", "default.py"))
    assert "mask" not in load_config(os.path.join(REPO, "configs", "ac_two_rooms.py"))


def test_a_method_without_its_sections_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"method='planner' .*expected one of"):
        config_lib.base_config("planner")
    config = config_lib.base_config()
    config.method = "world_model"  # as --config.method=world_model on a JEPA config would
    with pytest.raises(
        ConfigError, match=r"config.method='world_model'.*base_config\('world_model'\)"
    ):
        config_lib.validate_config(config, num_devices=1)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("loss.type", "l3", r"config.loss.type='l3'.*one of \('l1', 'l2', 'smooth_l1'\)"),
        ("data.num_workers", -1, r"config.data.num_workers=-1.*an integer >= 0"),
        ("data.max_bad_fraction", 1.5, r"config.data.max_bad_fraction=1.5.*\[0, 1\]"),
        ("ema", (0.9, 1.2), r"config.ema=\(0.9, 1.2\).*momenta in \[0, 1\]"),
        ("ema", (1.0, 1.0), r"config.ema=\(1.0, 1.0\).*momentum below 1 with target.ema=True"),
    ],
)
def test_jepa_sections_are_checked_before_building(key, value, message):
    config = load_config(os.path.join(REPO, "tests", "configs", "tiny.py"))
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=message):
        build_trainer(config)


def test_recipes_carry_the_reference_values():
    ij = load_config(os.path.join(REPO, "configs", "ijepa_vith14_in1k.py"), "train=/x")
    assert (ij.model.encoder.size, ij.model.encoder.patch_size, ij.data.image_size) == (
        "huge",
        14,
        224,
    )
    assert (ij.batch_size, ij.total_steps, ij.optim.warmup_steps) == (2048, 187_500, 25_000)
    assert (ij.optim.start_lr, ij.optim.lr, ij.optim.final_lr) == (2e-4, 1e-3, 1e-6)
    assert tuple(ij.ema) == (0.996, 1.0) and ij.loss.type == "smooth_l1"
    assert not ij.model.predictor.zero_init_mask_tokens and not ij.data.flip
    assert ij.mask.kind == "multiblock2d" and ij.model.dtype == "bfloat16"

    vj = load_config(os.path.join(REPO, "configs", "vjepa_vitl16.py"), "videos=/x")
    assert (vj.model.encoder.size, vj.model.encoder.patch_size, vj.data.num_frames) == (
        "large",
        16,
        16,
    )
    assert (vj.batch_size, vj.total_steps, vj.optim.warmup_steps) == (3072, 90_000, 12_000)
    assert (vj.optim.lr, vj.optim.schedule_scale, vj.optim.grad_clip_norm) == (6.25e-4, 1.25, 10)
    assert tuple(vj.data.crop_aspect) == (0.75, 1.35) and vj.data.flip
    assert vj.mask.count_quantile == 0.04 and vj.data.frame_step == 4
    assert load_config(os.path.join(REPO, "configs", "vjepa_vitl16.py"), "shards=/s").data.name == (
        "clip_shards"
    )

    v21 = load_config(os.path.join(REPO, "configs", "vjepa21_vitg16.py"), "videos=/x")
    assert v21.model.encoder.output_levels == (9, 19, 29, 39)
    assert (v21.model.encoder.pos_embed, v21.model.encoder.rope_reference_grid) == (
        "rope_interleaved",
        16,
    )
    assert (v21.model.predictor.depth, v21.model.predictor.width) == (24, 384)
    assert (v21.loss.context_weight, tuple(v21.loss.context_ramp)) == (0.5, (15_000, 30_000))
    assert v21.loss.context_distance_weight and tuple(v21.ema) == (0.99925, 0.99925)
    assert (v21.optim.lr, v21.optim.final_lr, v21.optim.schedule_scale) == (6e-4, 6e-4, 1.25)
    assert (v21.total_steps, v21.batch_size) == (300_000, 3072)
    v2 = load_config(os.path.join(REPO, "configs", "vjepa2_vitg16.py"))
    assert v2.model.encoder.pos_embed == "rope"


def test_video_folder_config_trains_on_videos_with_a_corrupt_file(tmp_path):
    videos = tmp_path / "videos"
    for i in range(4):
        write_index_video(str(videos / f"v{i}.mp4"), 24, tint=40 * i)
    write_truncated_video(str(videos / "broken.mp4"), str(videos / "v0.mp4"))
    config = load_config(
        os.path.join(REPO, "configs", "vjepa_video_folder.py"), f"videos={videos},runlocal"
    )
    config.data.max_bad_fraction = 0.5
    config.total_steps = 3
    config.checkpoint_every = 100  # one save, at the end
    config.model.encoder.update(width=32, num_heads=2, mlp_dim=64)  # compile faster
    out = train(config, str(tmp_path / "run"))
    losses = read_losses(tmp_path / "run")
    assert sorted(losses) == [1, 2, 3]
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    # 24 clips drawn from 5 files, one broken: the replacements are counted in the metrics.
    assert records[-1]["data/replaced"] > 0
    assert 0.0 <= records[-1]["data/wait_fraction"] <= 1.0
    assert out["final_metrics"]["data/replaced"] == records[-1]["data/replaced"]


def test_moving_mnist_config_streams_from_a_local_file(tmp_path):
    write_mnist_npz(str(tmp_path / "mnist.npz"))
    config = load_config(
        os.path.join(REPO, "configs", "vjepa_moving_mnist.py"),
        f"mnist={tmp_path / 'mnist.npz'},runlocal",
    )
    batch = next(iter(build_trainer(config).train_dataset()))
    assert batch["pixels"].shape == (8, 4, 64, 64, 3) and batch["pixels"].max() == 255


def test_cli_prepare_writes_shards_and_a_missing_folder_is_one_line(tmp_path):
    videos = tmp_path / "videos"
    for i in range(3):
        write_index_video(str(videos / f"v{i}.mp4"), 24, tint=40 * i)
    cfg = os.path.join(REPO, "configs", "vjepa_video_folder.py")
    out = cli(
        "prepare",
        f"--config={cfg}:videos={videos},runlocal",
        f"--output={tmp_path / 'shards'}",
        "--num_workers=0",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "wrote 3 clips in 1 shard(s)" in out.stdout
    config = load_config(cfg, f"shards={tmp_path / 'shards'},runlocal")
    batch = next(iter(build_trainer(config).train_dataset()))
    assert batch["pixels"].shape == (8, 4, 32, 32, 3)

    # A missing video folder: one line naming it, exit 2, and the workdir is not created.
    out = cli("train", f"--config={cfg}:videos={tmp_path / 'nope'}", f"--workdir={tmp_path / 'w'}")
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"config.data.path='{tmp_path / 'nope'}' does not exist" in lines[0]
    assert not (tmp_path / "w").exists()
