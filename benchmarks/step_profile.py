"""Where a train step's time goes: a profile of the jitted step split by model part and op kind.

Traces `--steps` steps of a training config's compiled train step with `jax.profiler`, maps
every traced XLA op back to the jax code that produced it (the compiled HLO's `op_name`
metadata) and prints milliseconds per step in a table:

  rows     model part and pass, read from the op's jax path: "Predictor forward" (under
           jvp(Predictor)), "VisionTransformer backward" (under transpose(jvp(...))), a module
           called outside any jvp (the EMA target's forward pass: "VisionTransformer no-grad
           forward"), and "rest" (loss, regularizer, optimizer, EMA update)
  columns  "matmul" (dots and the fusions built around them), "attention matmul" (the ones
           of the attention kernel: q.k and probs.v, forward and backward), "layout" (copies and
           transposes), "other" (elementwise work, reductions, gathers)

and, below it, the step's wall time against the ops' summed time: on a CPU the ops of one
step run on several threads, so `busy` = summed op time / (wall time x threads) says how much of
the machine the step keeps busy. Use it before optimising (issue "Speed where users feel it").

  python benchmarks/step_profile.py                      # configs/benchmark_vjepa_tiny.py
  python benchmarks/step_profile.py --config=configs/default.py --steps=3
  python benchmarks/step_profile.py --top=20      # and the 20 ops with the most time

Last line: wall_ms=... op_ms=... matmul_share=... attention_share=... layout_share=...
other_share=... busy=...
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from jepa_jax.commands.common import define_config_flag, loaded_config, start_command  # noqa: E402
from jepa_jax.sharding import make_global_batch  # noqa: E402
from jepa_jax.train.setup import build_trainer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
define_config_flag("Training config.", os.path.join(REPO, "configs", "benchmark_vjepa_tiny.py"))
_STEPS = flags.DEFINE_integer("steps", 5, "Traced steps (after a compile and two warm-up steps).")
_TOP = flags.DEFINE_integer(
    "top", 0, "Also list the N ops with the most time, with their jax path."
)
_TRACE_DIR = flags.DEFINE_string(
    "trace_dir",
    "",
    "Keep the profiler trace here (for Perfetto / TensorBoard), with the step's compiled HLO "
    "(step.hlo.txt.gz) that names its ops; default: discard.",
)
_THREADS = flags.DEFINE_integer(
    "threads", 0, "Threads the ops share, for `busy` (0: os.cpu_count() on CPU, else 1)."
)

KINDS = ("matmul", "attention matmul", "layout", "other")
REST = "rest"

# `%name = type opcode(...)`, then `calls=%computation` and the op_name metadata if present.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S.*?\s([\w\-]+)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->.*\{\s*$")
_MATMUL_OPCODES = {"dot", "convolution"}
# Library calls that are matmuls or fused attention (cuBLAS, cuDNN, oneDNN, XNNPACK).
_MATMUL_CUSTOM_CALL = re.compile(r"gemm|cublas|cudnn|onednn|matmul|xnn|ynn", re.IGNORECASE)
# Our attention kernels' einsums (models/layers.py): q.k -> bhqk and the products with it.
# jax.nn.dot_product_attention's path, and cuDNN's fused kernel (custom call __cudnn$fmha...).
_ATTENTION = re.compile(r"bhqk|bqhd,bkhd|dot_product_attention|fmha")


def _module_pass(op_name: str) -> str:
    """The model part and pass of an op from its jax path, e.g.
    "jit(step_fn)/transpose(jvp(Predictor))/..." -> "Predictor backward"."""
    m = re.search(r"(transpose\()?jvp\(([A-Z]\w*)\)", op_name)
    if m:
        return f"{m.group(2)} {'backward' if m.group(1) else 'forward'}"
    # A module applied outside any differentiation (the EMA target's forward pass).
    m = re.search(r"(?:^|/)([A-Z]\w*)/", op_name)
    if m:
        return f"{m.group(1)} no-grad forward"
    return REST


def _instructions(lines: list[str]):
    """(name, opcode, jax path or "", line) of each instruction line of compiled HLO text
    (computation headers skipped)."""
    for line in lines:
        inst = _INSTRUCTION.match(line)
        if inst and not _COMPUTATION.match(line):
            yield inst.group(1), inst.group(2), (_OP_NAME.search(line) or [None, ""])[1], line


def hlo_op_index(hlo_text: str) -> dict[str, tuple[str, str]]:
    """{instruction name: (model part, kind)} for a compiled HLO module's text.

    kind is one of KINDS: a dot or convolution, or a fusion / library call around one, is a
    matmul ("attention matmul" when its jax path names our attention einsums); copies and
    transposes are "layout"; everything else "other".
    """
    lines = hlo_text.splitlines()
    has_matmul: dict[str, bool] = {}
    current = None
    for line in lines:  # which computations (fusion bodies) contain a dot
        header = _COMPUTATION.match(line)
        if header:
            current = header.group(1)
            has_matmul[current] = False
            continue
        inst = _INSTRUCTION.match(line)
        if current is not None and inst and inst.group(2) in _MATMUL_OPCODES:
            has_matmul[current] = True
    index = {}
    for name, opcode, op_name, line in _instructions(lines):
        calls = _CALLS.search(line)
        if opcode in _MATMUL_OPCODES or (calls and has_matmul.get(calls.group(1), False)):
            kind = "matmul"
        elif opcode == "custom-call" and _MATMUL_CUSTOM_CALL.search(line):
            kind = "matmul"
        elif opcode in ("copy", "transpose") or re.search(r"copy|transpose", name):
            kind = "layout"
        else:
            kind = "other"
        if kind == "matmul" and (_ATTENTION.search(op_name) or "fmha" in line):
            kind = "attention matmul"
        index[name] = (_module_pass(op_name), kind)
    return index


def hlo_op_names(hlo_text: str) -> dict[str, str]:
    """{instruction name: its jax path (op_name metadata, "" if none)} for a compiled HLO
    module's text, to say where the slowest ops came from."""
    return {name: op_name for name, _, op_name, _ in _instructions(hlo_text.splitlines())}


def _sanitized(name: str) -> str:
    # GPU kernels are named after their fusion with "." and "-" made "_" ("loop_add_fusion_12").
    return re.sub(r"[^A-Za-z0-9]", "_", name)


# Kernels of libraries (cuBLAS, cuDNN, CUTLASS) that no event ties to an op: in a CUDA graph
# they carry the graph's name. Booked by what their names say they are.
LIBRARY = "GPU library kernels (op unknown)"
# cuDNN serves only the fused attention here (its helper kernels: convert_dq, dot_do_o).
_LIBRARY_ATTENTION = re.compile(r"fmha|sdpa|flash|attention|cudnn", re.IGNORECASE)
_LIBRARY_MATMUL = re.compile(r"gemm|nvjet|xmma|cutlass|cublas", re.IGNORECASE)


def op_events(events: list[dict], index: dict[str, tuple[str, str]]):
    """(label, (model part, kind), microseconds) for each trace event that is one op's work.

    An event names its op by its `hlo_op` argument (GPU kernels) or its own name (CPU thunks,
    GPU kernels named after their fusion, up to "." / "_"); label is then the instruction.
    A kernel on a device line ("/device:..." process) that names no op is a library kernel,
    labelled by its own name under LIBRARY. Where the trace has lines named "XLA Ops" (one
    event per op, however many kernels it launched), only those are read, so an op is not
    counted there and on its stream too. Host-side events (the executor, Python) are skipped.
    An event repeated on several lines of one process (same name, same start) is one
    execution, read once: a GPU trace of the ViT-L step listed its ops ~3 times (17,029 events
    per step for 5,532 kernel-launching instructions, summing to 2.4x the wall time).
    """
    seen: set[tuple] = set()
    alias = {_sanitized(k): k for k in index}
    meta = [e for e in events if e.get("ph") == "M"]
    ops_lines = {
        (e.get("pid"), e.get("tid"))
        for e in meta
        if e.get("name") == "thread_name" and (e.get("args") or {}).get("name") == "XLA Ops"
    }
    devices = {
        e.get("pid")
        for e in meta
        if e.get("name") == "process_name"
        and str((e.get("args") or {}).get("name", "")).startswith("/device:")
    }
    for e in events:
        if e.get("ph") != "X":
            continue
        if ops_lines and (e.get("pid"), e.get("tid")) not in ops_lines:
            continue
        if e.get("ts") is not None:
            execution = (e.get("pid"), e.get("name"), e.get("ts"))
            if execution in seen:
                continue
            seen.add(execution)
        op = None
        for candidate in ((e.get("args") or {}).get("hlo_op"), e.get("name")):
            if candidate:
                op = candidate if candidate in index else alias.get(_sanitized(candidate))
                if op is not None:
                    break
        if op is not None:
            yield op, index[op], e.get("dur", 0.0)
        elif e.get("pid") in devices and not str(e.get("name", "")).startswith("Memset"):
            name = str(e.get("name", ""))
            if _LIBRARY_ATTENTION.search(name):
                kind = "attention matmul"
            elif _LIBRARY_MATMUL.search(name):
                kind = "matmul"
            else:
                kind = "other"
            yield name, (LIBRARY, kind), e.get("dur", 0.0)


def top_ops(events: list[dict], index: dict[str, tuple[str, str]], steps: int, n: int):
    """The `n` ops (or library kernels) with the most time, [(ms per step, executions per step,
    label, (part, kind))], largest first, from the same trace events as `summarize`."""
    ms: dict[str, float] = collections.defaultdict(float)
    count: dict[str, int] = collections.defaultdict(int)
    keys: dict[str, tuple[str, str]] = {}
    for label, key, us in op_events(events, index):
        ms[label] += us / 1e3 / steps
        count[label] += 1
        keys[label] = key
    order = sorted(ms, key=lambda k: -ms[k])[:n]
    return [(ms[k], count[k] / steps, k, keys[k]) for k in order]


def summarize(events: list[dict], index: dict[str, tuple[str, str]], steps: int) -> dict:
    """Milliseconds per step of the traced ops, {(part, kind): ms}, from perfetto trace events
    (which events are ops: `op_events`)."""
    table: dict[tuple[str, str], float] = collections.defaultdict(float)
    for _, key, us in op_events(events, index):
        table[key] += us / 1e3 / steps
    return dict(table)


def describe_trace(events: list[dict], n: int = 15) -> list[str]:
    """What a trace holds, for when no event matched an op: its lines (process / thread
    names) and its most frequent timed events with their first arguments."""
    lines = sorted(
        {
            f"{e.get('name')}: {(e.get('args') or {}).get('name')}"
            for e in events
            if e.get("ph") == "M"
        }
    )
    names = collections.Counter(e.get("name", "") for e in events if e.get("ph") == "X")
    args: dict[str, list] = {}
    for e in events:
        if e.get("ph") == "X":
            args.setdefault(e.get("name", ""), sorted((e.get("args") or {}).items())[:6])
    common = [f"{c:6d} x {name[:60]} args {args[name]}" for name, c in names.most_common(n)]
    return lines[:40] + common


def _trace_events(trace_dir: str) -> list[dict]:
    """The events of the newest trace jax.profiler wrote under trace_dir (a kept --trace_dir
    holds one per run). With --trace_dir, a copy goes to trace_dir/step.trace.json.gz beside
    step.hlo.txt.gz, two files at the top that name each other's ops."""
    pattern = os.path.join(trace_dir, "plugins", "profile", "*", "*.trace.json.gz")
    files = glob.glob(pattern)
    if not files:
        sys.exit(f"jax.profiler wrote no perfetto trace under {trace_dir}")
    newest = max(files, key=os.path.getmtime)
    if _TRACE_DIR.value:
        shutil.copyfile(newest, os.path.join(trace_dir, "step.trace.json.gz"))
    with gzip.open(newest) as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def kind_totals(table: dict[tuple[str, str], float]) -> dict[str, float]:
    """{kind: ms per step over all parts} for each of KINDS."""
    return {k: sum(v for (_, kind), v in table.items() if kind == k) for k in KINDS}


def format_table(table: dict[tuple[str, str], float]) -> list[str]:
    """The profile as text lines: one row per part (largest first), KINDS columns, ms/step."""
    parts = collections.defaultdict(float)
    for (part, _), ms in table.items():
        parts[part] += ms
    order = sorted(parts, key=lambda p: (p == REST, -parts[p]))
    head = f"{'part':32s}" + "".join(f"{k:>18s}" for k in KINDS) + f"{'total':>10s}"
    rows = [head]
    for part in order:
        cells = "".join(f"{table.get((part, k), 0.0):18.1f}" for k in KINDS)
        rows.append(f"{part:32s}{cells}{parts[part]:10.1f}")
    per_kind = kind_totals(table)
    totals = "".join(f"{per_kind[k]:18.1f}" for k in KINDS)
    rows.append(f"{'all':32s}{totals}{sum(table.values()):10.1f}")
    return rows


def main(argv):
    start_command(argv)
    config = loaded_config()
    if _STEPS.value < 1:
        sys.exit(f"--steps must be >= 1, got {_STEPS.value}")
    trainer = build_trainer(config)
    mesh = trainer.mesh
    it = iter(trainer.train_dataset())
    with jax.set_mesh(mesh):
        batches = [make_global_batch(next(it), mesh) for _ in range(2)]
        state, shardings = trainer.create_state()
        step = trainer.make_step(shardings, batches[0])
        # Run the executable whose HLO the index reads: its op names are the trace's, and
        # calling `step` instead would compile the same program a second time.
        compiled = step.lower(state, batches[0]).compile()
        hlo_text = compiled.as_text()  # large for a big model: rendered once
        index = hlo_op_index(hlo_text)
        if _TRACE_DIR.value:  # the trace's op names are this HLO's: keep them together
            os.makedirs(_TRACE_DIR.value, exist_ok=True)
            with gzip.open(os.path.join(_TRACE_DIR.value, "step.hlo.txt.gz"), "wt") as f:
                f.write(hlo_text)
        for i in range(3):  # warm-up
            state, metrics = compiled(state, batches[i % 2])
        jax.block_until_ready(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            trace_dir = _TRACE_DIR.value or tmp
            # No Python tracer: its events would outnumber the ops' and say nothing about them.
            options = jax.profiler.ProfileOptions()
            options.python_tracer_level = 0
            with jax.profiler.trace(
                trace_dir, create_perfetto_trace=True, profiler_options=options
            ):
                t0 = time.perf_counter()
                for i in range(_STEPS.value):
                    state, metrics = compiled(state, batches[i % 2])
                    jax.block_until_ready(metrics)
                wall_ms = (time.perf_counter() - t0) * 1e3 / _STEPS.value
            events = _trace_events(trace_dir)
    table = summarize(events, index, _STEPS.value)
    if not table:
        print("\n".join(describe_trace(events)), file=sys.stderr)
        sys.exit(
            "no traced event matched an op of the compiled step (unknown trace format; its "
            "lines and commonest events are above)"
        )
    top = top_ops(events, index, _STEPS.value, _TOP.value)
    launches = sum(1 for _ in op_events(events, index)) / _STEPS.value
    threads = _THREADS.value or (os.cpu_count() if jax.default_backend() == "cpu" else 1)
    op_ms = sum(table.values())
    print(f"{jax.device_count()} x {jax.devices()[0].device_kind}; {_STEPS.value} traced steps")
    print("milliseconds per step, by model part and op kind (summed over threads):")
    for row in format_table(table):
        print("  " + row)
    if top:
        paths = hlo_op_names(hlo_text)
        print(f"the {len(top)} ops with the most time (ms/step, launches/step, part, kind, path):")
        for ms, n, name, (part, kind) in top:
            path = paths.get(name, "").removeprefix("jit(step_fn)/")
            print(f"  {ms:8.2f} {n:5.0f}  {name:28.28s} {part:28.28s} {kind:16s} {path[-90:]}")
    print(f"{launches:.0f} op executions (kernels / thunks) per step")
    busy = op_ms / (wall_ms * threads)
    print(
        f"wall {wall_ms:.1f} ms/step (traced, so a little slower than untraced); ops {op_ms:.1f} "
        f"ms/step over {threads} thread(s): busy {busy:.0%}"
    )
    share = {k: ms / op_ms for k, ms in kind_totals(table).items()}
    print(
        f"wall_ms={wall_ms:.1f} op_ms={op_ms:.1f} matmul_share={share['matmul']:.3f} "
        f"attention_share={share['attention matmul']:.3f} layout_share={share['layout']:.3f} "
        f"other_share={share['other']:.3f} busy={busy:.3f}"
    )


if __name__ == "__main__":
    # On GPU, XLA runs the step's kernels as CUDA graphs, and there every library kernel
    # (cuBLAS, cuDNN) names the graph, not its op: profile without them (a run's wall time is a
    # little shorter than the traced one). Set before the backend starts (XLA reads the flags
    # then), and only when run as a script, so importing this module changes no environment.
    # An XLA_FLAGS that sets it already wins; CPUs ignore the flag.
    if "xla_gpu_enable_command_buffer" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_gpu_enable_command_buffer="
        ).strip()
    app.run(main)
