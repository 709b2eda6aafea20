"""benchmarks/step_profile.py: HLO ops mapped to model parts and kinds, and the script's table."""

import gzip
import json
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


def test_gpu_traces_book_kernels_to_their_ops_and_library_kernels_by_name():
    """The layout of a CUDA-graph GPU trace as jax 0.11 writes it (H200, 2026-12-04): kernels on
    a "/device:GPU:0" stream, XLA's named after their fusion ("." -> "_"), every one carrying
    the graph as hlo_op; cuDNN / cuBLAS kernels named by the library; host lines beside."""
    index = step_profile.hlo_op_index(HLO)
    graph = {"hlo_op": "command_buffer_1", "hlo_module": "jit_step_fn"}
    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 1, "tid": 14, "name": "thread_name", "args": {"name": "Stream #14"}},
        {"ph": "M", "pid": 701, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "X", "pid": 1, "tid": 14, "name": "add_fusion_5", "dur": 400.0, "args": graph},
        {
            "ph": "X",
            "pid": 1,
            "tid": 14,
            "name": "nvjet_sm90_tst_128x160_v_bz_NNT",
            "dur": 600.0,
            "args": graph,
        },
        {
            "ph": "X",
            "pid": 1,
            "tid": 14,
            "dur": 800.0,
            "args": graph,
            "name": "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_kernel0_0",
        },
        {"ph": "X", "pid": 1, "tid": 14, "name": "Memset (Device)", "dur": 50.0, "args": graph},
        {"ph": "X", "pid": 701, "tid": 9, "name": "step_fn", "dur": 9000.0},
    ]
    table = step_profile.summarize(events, index, steps=1)
    assert table == {
        ("VisionTransformer no-grad forward", "other"): 0.4,
        (step_profile.LIBRARY, "matmul"): 0.6,
        (step_profile.LIBRARY, "attention matmul"): 0.8,
    }
    top = step_profile.top_ops(events, index, steps=1, n=2)
    assert [(label[:5], key[1]) for _, _, label, key in top] == [
        ("cudnn", "attention matmul"),
        ("nvjet", "matmul"),
    ]
    # Where a trace has per-op "XLA Ops" lines, only they are read (no double count).
    ops_line = {"ph": "M", "pid": 1, "tid": 2, "name": "thread_name", "args": {"name": "XLA Ops"}}
    per_op = {"ph": "X", "pid": 1, "tid": 2, "name": "mm_fusion.3", "dur": 1000.0}
    assert step_profile.summarize(events + [ops_line, per_op], index, steps=1) == {
        ("Predictor backward", "matmul"): 1.0
    }
    # One execution listed on two lines of the device (same op, same start) is read once;
    # two executions (two starts) twice.
    second_line = dict(ops_line, tid=3)
    once = [ops_line, second_line] + [dict(per_op, ts=10.0, tid=t) for t in (2, 3)]
    assert step_profile.summarize(once, index, steps=1) == {("Predictor backward", "matmul"): 1.0}
    twice = [ops_line, dict(per_op, ts=10.0), dict(per_op, ts=20.0)]
    assert step_profile.summarize(twice, index, steps=1) == {("Predictor backward", "matmul"): 2.0}


def test_the_script_profiles_a_train_step(tmp_path):
    config = os.path.join(REPO, "configs", "default.py:runlocal")
    out = benchmark(
        "step_profile.py",
        f"--config={config}",
        "--steps=1",
        f"--trace_dir={tmp_path}",
        env={"JAX_NUM_CPU_DEVICES": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "VisionTransformer forward" in out.stdout and "Predictor backward" in out.stdout
    fields = last_line_fields(out.stdout)
    shares = [float(fields[k]) for k in fields if k.endswith("_share")]
    assert len(shares) == 4 and sum(shares) == pytest.approx(1.0, abs=1e-2)
    assert float(fields["matmul_share"]) > 0 and 0 < float(fields["busy"])
    # A kept trace: the trace and the HLO that names its ops, side by side at the top.
    with gzip.open(tmp_path / "step.hlo.txt.gz", "rt") as f:
        assert "ENTRY" in f.read()
    with gzip.open(tmp_path / "step.trace.json.gz") as f:
        assert json.load(f)["traceEvents"]
