"""benchmarks/step_profile.py: HLO ops mapped to model parts and kinds, and the script's table."""

import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import step_profile  # noqa: E402
from helpers import benchmark, last_line_fields  # noqa: E402


def _op(name: str, rest: str, op_name: str) -> str:
    """One HLO instruction line with jax's op_name metadata."""
    return f'  %{name} = f32[4,8]{{1,0}} {rest}, metadata={{op_name="jit(step_fn)/{op_name}"}}'


HLO = "\n".join(
    [
        "%fused_dot (p0: f32[4,8], p1: f32[8,8]) -> f32[4,8] {",
        "  %p0 = f32[4,8]{1,0} parameter(0)",
        "  %p1 = f32[8,8]{1,0} parameter(1)",
        "  ROOT %dot.1 = f32[4,8]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}",
        "}",
        "",
        "%fused_add (p0: f32[4,8]) -> f32[4,8] {",
        "  %p0 = f32[4,8]{1,0} parameter(0)",
        "  ROOT %add.1 = f32[4,8]{1,0} add(%p0, %p0)",
        "}",
        "",
        "ENTRY %main.1 (a: f32[4,8], b: f32[8,8]) -> (f32[4,8], f32[8,4]) {",
        "  %a = f32[4,8]{1,0} parameter(0)",
        "  %b = f32[8,8]{1,0} parameter(1)",
        _op(
            "mm_fusion.3",
            "fusion(%a, %b), kind=kCustom, calls=%fused_dot",
            "transpose(jvp(Predictor))/transformer/blocks_0/mlp/fc1/dot_general",
        ),
        _op(
            "attn_fusion.4",
            "fusion(%a, %b), kind=kCustom, calls=%fused_dot",
            "jvp(VisionTransformer)/transformer/blocks_0/attn/bqhd,bkhd->bhqk/dot_general",
        ),
        _op(
            "add_fusion.5",
            "fusion(%mm_fusion.3), kind=kLoop, calls=%fused_add",
            "VisionTransformer/transformer/blocks_0/norm1/add",
        ),
        _op("transpose.6", "transpose(%add_fusion.5), dimensions={1,0}", "jit(_where)/select_n"),
        "  ROOT %tuple.7 = (f32[4,8]{1,0}, f32[8,4]{1,0}) tuple(%attn_fusion.4, %transpose.6)",
        "}",
    ]
)


def test_ops_are_mapped_to_their_part_pass_and_kind():
    index = step_profile.hlo_op_index(HLO)
    assert index["mm_fusion.3"] == ("Predictor backward", "matmul")
    assert index["attn_fusion.4"] == ("VisionTransformer forward", "attention matmul")
    assert index["add_fusion.5"] == ("VisionTransformer no-grad forward", "other")
    assert index["transpose.6"] == ("rest", "layout")
    events = [
        {"ph": "X", "name": "mm_fusion.3", "dur": 3000.0},
        {"ph": "X", "name": "gpu_kernel", "dur": 1000.0, "args": {"hlo_op": "attn_fusion.4"}},
        {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 9000.0},  # host side: ignored
        {"ph": "i", "name": "mm_fusion.3"},
    ]
    table = step_profile.summarize(events, index, steps=2)
    assert table == {
        ("Predictor backward", "matmul"): 1.5,
        ("VisionTransformer forward", "attention matmul"): 0.5,
    }
    rows = step_profile.format_table(table)
    assert rows[1].startswith("Predictor backward") and rows[-1].split()[-1] == "2.0"


def test_the_script_profiles_a_train_step():
    config = os.path.join(REPO, "configs", "default.py:runlocal")
    out = benchmark(
        "step_profile.py", f"--config={config}", "--steps=1", env={"JAX_NUM_CPU_DEVICES": "1"}
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "VisionTransformer forward" in out.stdout and "Predictor backward" in out.stdout
    fields = last_line_fields(out.stdout)
    shares = [float(fields[k]) for k in fields if k.endswith("_share")]
    assert len(shares) == 4 and sum(shares) == pytest.approx(1.0, abs=1e-2)
    assert float(fields["matmul_share"]) > 0 and 0 < float(fields["busy"])
