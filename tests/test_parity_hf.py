"""Converter parity against PyTorch: Hugging Face IJepa / VJEPA2 models with small random weights,
converted into our params, give the same features (to 1e-4) on the same input. Also the
reference `.pth.tar` path (`module.`-prefixed keys, built from the same weights) and the export's
PyTorch-named safetensors (loaded back into a Hugging Face model).

Needs the optional `parity` extra (torch, transformers); skipped without it.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from jepa_jax.convert.huggingface import convert_hf_state_dict  # noqa: E402
from jepa_jax.convert.sources import convert_source  # noqa: E402
from jepa_jax.export.encoder_dir import SAFETENSORS_FILE, write_encoder_dir  # noqa: E402
from jepa_jax.models.pos_embed import sincos_table  # noqa: E402

ATOL = 1e-4
# Hugging Face IJepa names of the reference layout's keys (ours: theirs), outside the blocks and
# (besides q/k/v) inside each block.
IJEPA_TOP = {
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "pos_embed": "embeddings.position_embeddings",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
IJEPA_BLOCK = (
    ("attn.proj", "attention.o_proj"),
    ("norm1", "layernorm_before"),
    ("norm2", "layernorm_after"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
)


def randomize_norms(model):
    """HF inits LayerNorms to (1, 0); random affine parameters make the check sensitive to them."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(0.2 * torch.randn(module.weight.shape, generator=gen))
                module.bias.add_(0.2 * torch.randn(module.bias.shape, generator=gen))


def numpy_state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def qkv_to_reference(sd, q, k, v, prefix_out):
    """Fuse HF q/k/v into the reference's qkv (an independent re-statement of the layout)."""
    return {
        f"{prefix_out}.qkv.weight": np.concatenate(
            [sd[q + ".weight"], sd[k + ".weight"], sd[v + ".weight"]]
        ),
        f"{prefix_out}.qkv.bias": np.concatenate(
            [sd[q + ".bias"], sd[k + ".bias"], sd[v + ".bias"]]
        ),
    }


def hf_to_reference(sd, layers, q, k, v, renames, top):
    """A reference-layout encoder state dict from an HF one: `top` maps reference keys to HF keys,
    q/k/v name HF's attention projections and `renames` (ours, theirs) the other block layers."""
    enc = {ours: sd[theirs] for ours, theirs in top.items()}
    for i in range(2):
        h, b = f"{layers}.{i}", f"blocks.{i}"
        a = f"{h}.attention"
        enc.update(qkv_to_reference(sd, f"{a}.{q}", f"{a}.{k}", f"{a}.{v}", f"{b}.attn"))
        for ours, theirs in renames:
            enc[f"{b}.{ours}.weight"] = sd[f"{h}.{theirs}.weight"]
            enc[f"{b}.{ours}.bias"] = sd[f"{h}.{theirs}.bias"]
    return enc


@pytest.fixture(scope="module")
def ijepa():
    torch.manual_seed(0)
    config = transformers.IJepaConfig(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=96,
        image_size=32,
        patch_size=8,
        layer_norm_eps=1e-6,
        attn_implementation="eager",
    )
    model = transformers.IJepaModel(config).eval()
    randomize_norms(model)
    # Released I-JEPA weights carry the fixed 2D sin-cos table with the column channels first.
    with torch.no_grad():
        model.embeddings.position_embeddings.copy_(
            torch.from_numpy(sincos_table(48, (4, 4), w_first=True))[None]
        )
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    return model, x.transpose(0, 2, 3, 1), ref


@pytest.fixture(scope="module")
def vjepa2():
    torch.manual_seed(0)
    # head_dim 20: 3 RoPE chunks of 6 channels and 2 unrotated ones, as ViT-H's 80 = 3 x 26 + 2.
    config = transformers.VJEPA2Config(
        patch_size=8,
        crop_size=32,
        frames_per_clip=4,
        tubelet_size=2,
        hidden_size=80,
        num_attention_heads=4,
        num_hidden_layers=2,
        mlp_ratio=2.0,
        layer_norm_eps=1e-6,
        pred_hidden_size=32,
        pred_num_attention_heads=2,
        pred_num_hidden_layers=1,
        pred_num_mask_tokens=2,
        attn_implementation="eager",
    )
    model = transformers.VJEPA2Model(config).eval()
    randomize_norms(model)
    x = np.random.default_rng(1).normal(size=(2, 4, 3, 32, 32)).astype(np.float32)  # B T C H W
    with torch.no_grad():
        ref = model(pixel_values_videos=torch.from_numpy(x), skip_predictor=True)
    return model, x.transpose(0, 1, 3, 4, 2), ref.last_hidden_state.numpy()


def test_versions_are_recorded():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")


def test_hf_ijepa_parity(ijepa):
    model, x, ref = ijepa
    cfg, params, skipped = convert_hf_state_dict(numpy_state(model), model.config.to_dict())
    assert cfg.pos_embed == "sincos_wh" and cfg.input_shape == (32, 32, 3) and not skipped
    ours = np.asarray(cfg.build().apply({"params": params}, x))
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)


def test_hf_vjepa2_parity_with_tiled_3d_rope(vjepa2):
    model, x, ref = vjepa2
    cfg, params, skipped = convert_hf_state_dict(numpy_state(model), model.config.to_dict())
    assert cfg.pos_embed == "rope" and cfg.input_shape == (4, 32, 32, 3)
    assert skipped and all(k.startswith("predictor.") for k in skipped)  # encoder only
    ours = np.asarray(cfg.build().apply({"params": params}, x))
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)


def test_reference_pth_tar_checkpoints_convert(tmp_path, ijepa, vjepa2):
    # I-JEPA: a training checkpoint dict with DDP `module.` prefixes.
    model, x, ref = ijepa
    enc = hf_to_reference(
        numpy_state(model), "layers", "q_proj", "k_proj", "v_proj", IJEPA_BLOCK, IJEPA_TOP
    )
    checkpoint = {
        "target_encoder": {f"module.{k}": torch.from_numpy(v) for k, v in enc.items()},
        "encoder": {f"module.{k}": torch.zeros_like(torch.from_numpy(v)) for k, v in enc.items()},
        "epoch": 300,
    }
    path = str(tmp_path / "in1k-latest.pth.tar")
    torch.save(checkpoint, path)
    cfg, params, info, _ = convert_source(path, num_heads=3)
    assert info["entry"] == "target_encoder" and cfg.pos_embed == "sincos_wh"
    ours = np.asarray(cfg.build().apply({"params": params}, x))
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)

    # V-JEPA 2: `module.backbone.` prefixes, no pos_embed (RoPE), input size given.
    model, x, ref = vjepa2
    top = {
        "patch_embed.proj.weight": "encoder.embeddings.patch_embeddings.proj.weight",
        "patch_embed.proj.bias": "encoder.embeddings.patch_embeddings.proj.bias",
        "norm.weight": "encoder.layernorm.weight",
        "norm.bias": "encoder.layernorm.bias",
    }
    renames = (("attn.proj", "attention.proj"),) + tuple(
        (n, n) for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2")
    )
    sd = numpy_state(model)
    enc = hf_to_reference(sd, "encoder.layer", "query", "key", "value", renames, top)
    path = str(tmp_path / "vitl.pt")
    torch.save(
        {"encoder": {f"module.backbone.{k}": torch.from_numpy(v) for k, v in enc.items()}}, path
    )
    cfg, params, info, _ = convert_source(path, num_frames=4, image_size=32, num_heads=4)
    assert info["entry"] == "encoder" and cfg.pos_embed == "rope"
    ours = np.asarray(cfg.build().apply({"params": params}, x))
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)


def test_exported_safetensors_load_into_the_hf_model(tmp_path, ijepa):
    # Our export's PyTorch-named weights, renamed to HF's names, drive a fresh HF model to our
    # features: the export layout is the reference layout.
    from safetensors.numpy import load_file

    model, x, ref = ijepa
    cfg, params, _ = convert_hf_state_dict(numpy_state(model), model.config.to_dict())
    out = write_encoder_dir(str(tmp_path / "export"), cfg, params, {"kind": "test"})
    sd = load_file(f"{out}/{SAFETENSORS_FILE}")
    hf = {theirs: sd[ours] for ours, theirs in IJEPA_TOP.items()}
    for i in range(cfg.depth):
        h, b = f"layers.{i}", f"blocks.{i}"
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = slice(j * cfg.width, (j + 1) * cfg.width)
            hf[f"{h}.attention.{name}.weight"] = sd[f"{b}.attn.qkv.weight"][rows]
            hf[f"{h}.attention.{name}.bias"] = sd[f"{b}.attn.qkv.bias"][rows]
        for ours, theirs in IJEPA_BLOCK:
            hf[f"{h}.{theirs}.weight"] = sd[f"{b}.{ours}.weight"]
            hf[f"{h}.{theirs}.bias"] = sd[f"{b}.{ours}.bias"]
    fresh = transformers.IJepaModel(model.config).eval()
    fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in hf.items()}, strict=True)
    with torch.no_grad():
        got = fresh(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).last_hidden_state
    np.testing.assert_allclose(got.numpy(), ref, atol=ATOL, rtol=0)
