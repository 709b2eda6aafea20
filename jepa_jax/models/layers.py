"""Transformer building blocks shared by the encoder and the predictors.

Every parameter carries logical axis names (`nn.with_logical_partitioning`) and every large
activation a logical sharding constraint, so one model runs on any (data, fsdp, tensor) mesh: the
config's logical axis rules decide where each named axis lives.

Logical names used here:
  params:      embed (model width), mlp (MLP hidden), heads, kv (head dim), qkv (the 3 of q/k/v),
               patch (flattened pixel patch), layers (stacked by `nn.scan`)
  activations: act_batch, act_tokens, act_embed, act_mlp, act_heads, act_kv
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import linen as nn
from flax import traverse_util
from jax.ad_checkpoint import checkpoint_name

from jepa_jax.models.rope import apply_rope

Dtype = Any

LN_EPS = 1e-6
INIT_STD = 0.02


def trunc_normal(std: float = INIT_STD) -> Callable:
    """The reference init: truncated normal (at +-2 std) with the given std."""
    return nn.initializers.truncated_normal(stddev=std)


def dense_init(names: tuple[str | None, ...], std: float = INIT_STD) -> Callable:
    """Kernel initializer tagged with logical axis names."""
    return nn.with_logical_partitioning(trunc_normal(std), names)


def zeros_init(names: tuple[str | None, ...]) -> Callable:
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


def dense(features: int, axes: tuple[str, str], dtype: Dtype, name: str | None = None) -> nn.Dense:
    """A Dense layer [..., in] -> [..., features] whose kernel carries the logical axes
    (in_axis, out_axis) and whose zero bias carries out_axis (the sharding rules read them)."""
    return nn.Dense(
        features,
        dtype=dtype,
        kernel_init=dense_init(axes),
        bias_init=zeros_init(axes[1:]),
        name=name,
    )


def ones_init(names: tuple[str | None, ...]) -> Callable:
    return nn.with_logical_partitioning(nn.initializers.ones_init(), names)


def layer_norm(
    name: str | None = None, dtype: Dtype = jnp.float32, axis: str = "embed"
) -> nn.LayerNorm:
    """Affine LayerNorm (eps 1e-6, as the reference) whose scale and bias carry the logical
    axis `axis` (the width they normalise: "embed", or "mlp" inside an MLP)."""
    return nn.LayerNorm(
        epsilon=LN_EPS,
        dtype=dtype,
        scale_init=ones_init((axis,)),
        bias_init=zeros_init((axis,)),
        name=name,
    )


# Activation-rematerialisation policies, chosen by name in the config (`model.remat_policy`).
# The names in `save_*` policies are the `checkpoint_name` tags inside `Block`.
REMAT_POLICIES: dict[str, Any] = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.dots_saveable,
    "save_qkv_attn": jax.checkpoint_policies.save_only_these_names("qkv_proj", "attn_out"),
    "save_block_io": jax.checkpoint_policies.save_only_these_names("block_in", "attn_resid"),
}


def gelu(x: jax.Array, approximate: bool = False) -> jax.Array:
    """GELU of x (any shape, its dtype kept): x * Phi(x), or the tanh approximation.

    The exact form is written with erf, as PyTorch's nn.GELU: `jax.nn.gelu(approximate=False)`
    computes the same function through erfc, whose XLA CPU lowering is ~7x slower than erf's
    (a [8192, 768] fp32 forward 10.6 ms vs 1.4 ms, gradient 9.6 vs 2.9 ms on a 2-core AVX-512
    CPU); that made the exact GELU ~10% of the CPU train step's op time
    (benchmarks/step_profile.py). The two agree to 1e-6 in value and gradient.
    """
    if approximate:
        return jax.nn.gelu(x, approximate=True)
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2, widths [embed] -> [mlp_dim] -> [embed]."""

    mlp_dim: int
    dtype: Dtype = jnp.float32
    gelu_approximate: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        h = dense(self.mlp_dim, ("embed", "mlp"), self.dtype, "fc1")(x)
        h = nn.with_logical_constraint(h, ("act_batch", "act_tokens", "act_mlp"))
        h = gelu(h, self.gelu_approximate)
        h = checkpoint_name(h, "mlp_hidden")
        return dense(width, ("mlp", "embed"), self.dtype, "fc2")(h)


ATTENTION_IMPLEMENTATIONS = ("auto", "cudnn", "dot_product_attention", "einsum")

# Why a fallback: cuDNN's fused kernel needs a GPU, cuDNN >= 8.9, bf16/fp16 operands and a head
# dim it supports, and jax checks all of that while tracing; "auto" asks for it and, where jax
# refuses, uses XLA's attention instead, saying once why (an fp32 model on GPU, say).
_CUDNN_REFUSALS: set[str] = set()


def attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, implementation: str = "auto"
) -> jax.Array:
    """Softmax attention. q, k, v: [B, N, H, Dh]; mask: bool broadcastable to [B, H, Nq, Nk].

    "cudnn" is cuDNN's fused (flash) attention through `jax.nn.dot_product_attention`: GPU only,
    bf16/fp16 only; an error where unavailable. "dot_product_attention" is the same function's
    default, XLA's attention (jax selects no fused kernel unless asked). "einsum" is plain XLA
    with the 1/sqrt(Dh) scale folded into q (a [B,N,D] multiply instead of a [B,H,N,N] one); on
    CPU it avoids the [B,H,N,N] broadcasts and copies of the generic XLA path and trains ~20%
    faster. "auto" is "cudnn" on GPU where jax accepts it (else "dot_product_attention", with
    one log line saying why) and "einsum" elsewhere (TPU lowers both XLA paths alike).
    """
    if implementation == "auto":
        if jax.default_backend() != "gpu":
            return attention(q, k, v, mask, "einsum")
        try:
            return attention(q, k, v, mask, "cudnn")
        except (RuntimeError, ValueError, NotImplementedError) as refusal:
            _note_cudnn_refusal(refusal, q.dtype, q.shape[-1])
            return attention(q, k, v, mask, "dot_product_attention")
    if implementation == "cudnn":
        return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")
    if implementation == "dot_product_attention":
        return jax.nn.dot_product_attention(q, k, v, mask=mask)
    if implementation != "einsum":
        raise ValueError(
            f"unknown attention implementation {implementation!r}; expected one of "
            f"{ATTENTION_IMPLEMENTATIONS}"
        )
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    return _einsum_attention(q, k, v, mask)


def _note_cudnn_refusal(refusal: Exception, dtype, head_dim: int) -> None:
    """Logs, once per distinct reason, why "auto" attention runs XLA's instead of cuDNN's."""
    reason = f"{type(refusal).__name__}: {str(refusal).splitlines()[0] if str(refusal) else ''}"
    if reason not in _CUDNN_REFUSALS:
        _CUDNN_REFUSALS.add(reason)
        logging.warning(
            "attention: cuDNN's fused kernel refused %s operands with head dim %d (%s); using "
            "XLA's attention",
            jnp.dtype(dtype).name,
            head_dim,
            reason,
        )


def _attention_forward(q, k, v, mask):
    # Head-major ([B,H,N,Dh]) operands: on XLA's CPU backend the token-major products
    # ("bqhd,bkhd->bhqk", "bhqk,bkhd->bqhd") with the softmax fused in ran 1.4-3x slower than
    # these plus the transposes (README, "Attention and SIGReg on CPU"); TPU / GPU compilers
    # choose the layouts themselves.
    qh, kh, vh = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    logits = jnp.einsum("bhqd,bhkd->bhqk", qh, kh)
    if mask is not None:  # None (a pytree without leaves) skips the [B,H,N,N] select
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bhkd->bhqd", probs, vh).transpose(0, 2, 1, 3), probs


@jax.custom_vjp
def _einsum_attention(q, k, v, mask):
    return _attention_forward(q, k, v, mask)[0]


def _einsum_attention_fwd(q, k, v, mask):
    out, probs = _attention_forward(q, k, v, mask)
    return out, (q, k, v, mask, probs, out)


def _einsum_attention_bwd(residuals, d_out):
    # The minimal backward: four matmuls and one fused [B,H,N,N] pass,
    # dS = P * (dP - rowsum(dO * O)); autodiff of softmax materialises more N^2 temporaries.
    q, k, v, mask, probs, out = residuals
    d_v = jnp.einsum("bhqk,bqhd->bkhd", probs, d_out)
    d_probs = jnp.einsum("bqhd,bkhd->bhqk", d_out, v)
    delta = jnp.einsum("bqhd,bqhd->bhq", d_out.astype(jnp.float32), out.astype(jnp.float32))
    d_logits = probs.astype(jnp.float32) * (d_probs.astype(jnp.float32) - delta[..., None])
    d_logits = d_logits.astype(q.dtype)
    d_q = jnp.einsum("bhqk,bkhd->bqhd", d_logits, k)
    d_k = jnp.einsum("bhqk,bqhd->bkhd", d_logits, q)
    return d_q, d_k, d_v, None


_einsum_attention.defvjp(_einsum_attention_fwd, _einsum_attention_bwd)


class Projection(nn.Module):
    """Linear map contracting the last `num_in` axes of x into `features` axes.

    The kernel is created in its final shape [*in_shape, *features] (so its logical names
    apply to real axes); init is the reference's truncated normal, std 0.02.
    """

    features: tuple[int, ...]
    kernel_axes: tuple[str | None, ...]
    bias_axes: tuple[str | None, ...]
    num_in: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_shape = x.shape[x.ndim - self.num_in :]
        kernel = self.param("kernel", dense_init(self.kernel_axes), in_shape + tuple(self.features))
        bias = self.param("bias", zeros_init(self.bias_axes), tuple(self.features))
        y = jnp.tensordot(x.astype(self.dtype), kernel.astype(self.dtype), axes=self.num_in)
        return y + bias.astype(self.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (bias on, as the reference).

    `implementation` is `attention`'s: by default cuDNN's fused kernel on GPU (bf16), else XLA.

    Weight layout (for converters): qkv kernel [embed, 3, heads, head_dim] is torch's
    qkv.weight.T reshaped; proj kernel [heads, head_dim, embed] is torch's proj.weight.T reshaped.
    """

    num_heads: int
    dtype: Dtype = jnp.float32
    implementation: str = "auto"

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array | None = None, rope: tuple | None = None
    ) -> jax.Array:
        """x: [B, N, D]; mask: optional bool [B or 1, heads or 1, N, N], True = may attend;
        rope: optional (cos, sin) [B or 1, N, R] rotating q and k (models/rope.py)."""
        width = x.shape[-1]
        if width % self.num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}")
        head_dim = width // self.num_heads
        qkv = Projection(
            features=(3, self.num_heads, head_dim),
            kernel_axes=("embed", "qkv", "heads", "kv"),
            bias_axes=("qkv", "heads", "kv"),
            dtype=self.dtype,
            name="qkv",
        )(x)
        qkv = checkpoint_name(qkv, "qkv_proj")
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each [B, N, H, Dh]
        if rope is not None:  # V-JEPA 2: positions enter only through rotated q and k
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q = nn.with_logical_constraint(q, ("act_batch", "act_tokens", "act_heads", "act_kv"))
        k = nn.with_logical_constraint(k, ("act_batch", "act_tokens", "act_heads", "act_kv"))
        v = nn.with_logical_constraint(v, ("act_batch", "act_tokens", "act_heads", "act_kv"))
        out = attention(q, k, v, mask, self.implementation)
        out = checkpoint_name(out, "attn_out")
        return Projection(
            features=(width,),
            kernel_axes=("heads", "kv", "embed"),
            bias_axes=("embed",),
            num_in=2,
            dtype=self.dtype,
            name="proj",
        )(out)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    num_heads: int
    mlp_dim: int
    dtype: Dtype = jnp.float32
    gelu_approximate: bool = False
    attention_impl: str = "auto"
    emit_output: bool = False  # also return the output as the per-layer value (under nn.scan)

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, rope: tuple | None = None):
        x = checkpoint_name(x, "block_in")
        x = nn.with_logical_constraint(x, ("act_batch", "act_tokens", "act_embed"))
        h = Attention(self.num_heads, self.dtype, self.attention_impl, name="attn")(
            layer_norm("norm1", self.dtype)(x), mask, rope
        )
        x = checkpoint_name(x + h, "attn_resid")
        h = Mlp(self.mlp_dim, dtype=self.dtype, gelu_approximate=self.gelu_approximate, name="mlp")(
            layer_norm("norm2", self.dtype)(x)
        )
        x = x + h
        x = nn.with_logical_constraint(x, ("act_batch", "act_tokens", "act_embed"))
        # (carry, per-layer output) so the same module works under nn.scan.
        return x, (x if self.emit_output else None)


class Transformer(nn.Module):
    """A stack of `depth` pre-norm blocks (no final norm).

    scan=True stacks the block params along a leading `layers` axis and traces one block, which
    keeps compile time flat in depth; remat_policy (a key of REMAT_POLICIES, or "none") recomputes
    activations in the backward pass to save memory.
    """

    depth: int
    num_heads: int
    mlp_dim: int
    dtype: Dtype = jnp.float32
    gelu_approximate: bool = False
    scan: bool = False
    remat_policy: str = "none"
    attention_impl: str = "auto"

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array | None = None,
        rope: tuple | None = None,
        keep_layers: tuple[int, ...] = (),
    ) -> jax.Array | tuple[jax.Array, tuple[jax.Array, ...]]:
        """x: [B, N, D] -> [B, N, D]; mask and rope as in `Attention`, shared by all blocks.

        keep_layers: 0-based block indices whose outputs are also returned, as
        (output, (h_k for k in keep_layers)), each [B, N, D] (deep self-supervision).
        """
        block_cls = Block
        if self.remat_policy != "none":
            if self.remat_policy not in REMAT_POLICIES:
                raise ValueError(
                    f"unknown remat_policy {self.remat_policy!r}; expected 'none' or one of "
                    f"{sorted(REMAT_POLICIES)}"
                )
            block_cls = nn.remat(
                Block,
                policy=REMAT_POLICIES[self.remat_policy],
                prevent_cse=not self.scan,
            )
        kwargs = dict(
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dtype=self.dtype,
            gelu_approximate=self.gelu_approximate,
            attention_impl=self.attention_impl,
        )
        keep_layers = tuple(int(k) for k in keep_layers)
        if any(not 0 <= k < self.depth for k in keep_layers):
            raise ValueError(f"keep_layers {keep_layers} outside the {self.depth} blocks")
        if self.scan:
            stack = nn.scan(
                block_cls,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=(nn.broadcast, nn.broadcast),
                length=self.depth,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(**kwargs, emit_output=bool(keep_layers), name="blocks")
            x, per_layer = stack(x, mask, rope)  # per_layer: [depth, B, N, D] or None
            kept = tuple(per_layer[k] for k in keep_layers)
        else:
            outputs = []
            for i in range(self.depth):
                x, _ = block_cls(**kwargs, name=f"blocks_{i}")(x, mask, rope)
                outputs.append(x)
            kept = tuple(outputs[k] for k in keep_layers)
        return (x, kept) if keep_layers else x


class TransformerModel(nn.Module):
    """Base of the models built around one `Transformer` (the encoder and both predictors): the
    stack's execution options, declared once (keyword-only, so each model keeps its own
    positional fields) and passed on by `transformer_like`."""

    dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)  # compute dtype
    gelu_approximate: bool = dataclasses.field(default=False, kw_only=True)
    scan: bool = dataclasses.field(default=False, kw_only=True)  # nn.scan over the blocks
    remat_policy: str = dataclasses.field(default="none", kw_only=True)
    attention_impl: str = dataclasses.field(default="auto", kw_only=True)


STACK_OPTIONS = ("dtype", "gelu_approximate", "scan", "remat_policy", "attention_impl")


def transformer_like(owner: TransformerModel, name: str = "transformer") -> Transformer:
    """A `Transformer` child (created inside `owner`'s compact method) with the owner's depth,
    num_heads, mlp_dim and stack options (STACK_OPTIONS), so a new option reaches every model."""
    fields = ("depth", "num_heads", "mlp_dim") + STACK_OPTIONS
    return Transformer(**{f: getattr(owner, f) for f in fields}, name=name)


def rescale_residual_projections(params: Any, depth: int) -> Any:
    """Divide each block's attn.proj and mlp.fc2 kernels by sqrt(2 * layer_id), layer_id from 1.

    This is the reference init ("fix-init"). It runs on freshly initialised params because under
    `nn.scan` one initializer serves all layers.

    Args:
      params: a Transformer's param tree, with either `blocks_{i}` subtrees or one scanned
        `blocks` subtree whose leaves carry a leading [depth] axis.
      depth: number of blocks.

    Returns:
      A new tree; other leaves are shared with the input.
    """
    scales = 1.0 / np.sqrt(2.0 * np.arange(1, depth + 1))
    flat = traverse_util.flatten_dict(params)
    out = {}
    for path, leaf in flat.items():
        if path[-1] == "kernel" and path[-3:-1] in (("attn", "proj"), ("mlp", "fc2")):
            boxed = isinstance(leaf, nn.meta.AxisMetadata)  # logically partitioned at init
            value = leaf.unbox() if boxed else leaf
            block = path[-4]
            if block == "blocks":  # scanned: per-layer scale along the leading axis
                scale = scales.reshape((depth,) + (1,) * (value.ndim - 1))
            else:
                scale = scales[int(block.removeprefix("blocks_"))]
            value = value * jnp.asarray(scale, value.dtype)
            leaf = leaf.replace_boxed(value) if boxed else value
        out[path] = leaf
    return traverse_util.unflatten_dict(out)


def stack_layers(tree: Any) -> Any:
    """Unrolled -> scanned layout: every dict holding `blocks_0 .. blocks_{n-1}` gets one `blocks`
    entry whose leaves are stacked along a new leading [n] axis (what `scan=True` creates).

    Works on any tree with that structure (params, EMA params, optimizer moments), so a
    checkpoint trained with scan_layers=False can be continued with scan_layers=True.
    """
    if not isinstance(tree, dict):
        return tree
    keys = [k for k in tree if k.startswith("blocks_")]
    out = {k: stack_layers(v) for k, v in tree.items() if k not in keys}
    if keys:
        blocks = [stack_layers(tree[f"blocks_{i}"]) for i in range(len(keys))]
        out["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
    return out


def unstack_layers(tree: Any) -> Any:
    """Scanned -> unrolled layout: the inverse of `stack_layers`."""
    if not isinstance(tree, dict):
        return tree
    out = {k: unstack_layers(v) for k, v in tree.items() if k != "blocks"}
    if "blocks" in tree:
        depth = jax.tree.leaves(tree["blocks"])[0].shape[0]
        for i in range(depth):
            out[f"blocks_{i}"] = jax.tree.map(lambda x, i=i: x[i], tree["blocks"])
    return out


class ModalityEmbedding(nn.Module):
    """V-JEPA 2.1's learned modality vectors: "img_mod_embed" and "video_mod_embed" [width],
    drawn from N(0, 1e-6^2) as the reference, one added to every token of an input of that
    modality. Both params exist whichever modality a call sees."""

    width: int

    @nn.compact
    def __call__(self, h: jax.Array, image: bool) -> jax.Array:
        """h [B, N, width] plus the image (`image`) or video vector."""
        init = nn.with_logical_partitioning(nn.initializers.normal(1e-6), ("embed",))
        vectors = {m: self.param(f"{m}_mod_embed", init, (self.width,)) for m in ("img", "video")}
        return h + vectors["img" if image else "video"].astype(h.dtype)


def norm_and_project_out(x: jax.Array, out_width: int, dtype: Dtype) -> jax.Array:
    """A predictor's head: final LayerNorm ("norm") then a Dense back to the encoder width
    ("proj"); [..., W] -> [..., out_width]. Call inside the predictor's compact method, so the
    two modules are its children (the param names the converters and checkpoints rely on)."""
    x = layer_norm("norm", dtype)(x)
    return dense(out_width, ("embed", "embed_out"), dtype, "proj")(x)
