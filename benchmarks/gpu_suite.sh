#!/usr/bin/env bash
# The GPU benchmark suite, 6.5 minutes on one H200 (run it whenever a GPU is lent):
#   1. attention side by side at the ViT-L/16 shapes: cuDNN's fused kernel, XLA's, our einsum
#      (benchmarks/attention.py: forward + backward ms and error against fp32);
#   2. the ViT-L/16 V-JEPA train step (16 x 224 x 224 clips, predictor 384 x 12, batch 64) at
#      bf16 with the fused attention kernel (model.attention_impl=auto picks cuDNN's on GPU):
#      clips/s, model TFLOP/s per device and MFU against the chip's bf16 peak, steps queued as
#      the trainer runs them, plus one round waiting for each step (benchmarks/train_step.py);
#   3. the default job (`make train`'s config, install excluded): wall time and its probe table;
#   4. the data pipeline (benchmarks/data_pipeline.py): mp4 and ArrayRecord clips/s per worker
#      at 16 x 224 x 224 and the data wait of a short training run with 8 workers.
# It ends with one summary table; every part's full output is kept in OUT_DIR.
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR]
#   GPU_SUITE_SMOKE=1 bash benchmarks/gpu_suite.sh      # the same parts at toy sizes, any machine
set -euo pipefail
cd "$(dirname "$0")/.."
# $PYTHON if set, else the project's virtual environment, else python3.
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT=${1:-$(mktemp -d -t jepa_gpu_suite_XXXX)}
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2
# The batch-64 ViT-L step needs ~95 GB: more than JAX's default 75% of a smaller card's memory.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.94}
# The repository root on the import path, so the suite also runs where jepa-jax is not
# pip-installed (a bare GPU host whose packages come from a --target folder on PYTHONPATH).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "${GPU_SUITE_SMOKE:-0}" = 1 ]; then
  STEP_ARGS=(--config.model.encoder.size=tiny --config.model.encoder.depth=2
    --config.model.encoder.patch_size=4 --config.data.image_size=32 --config.data.num_frames=4
    --config.model.predictor.width=32 --config.model.predictor.depth=1
    --config.model.predictor.num_heads=2 --config.batch_size=4 --steps=4 --warmup=1
    --sync_round --matmul_size=256)
  ATTENTION_ARGS=(--batch=2 --tokens=64 --heads=4 --head_dim=32 --repeats=3)
  DEFAULT_CONFIG=configs/default.py:runlocal
  DATA_ARGS=(--num_videos=2 --video_frames=64 --clips=4 --train_steps=4 --num_workers=0
    --model_size=tiny --encoder_depth=2)
else
  STEP_ARGS=(--config.model.encoder.size=large --config.model.encoder.patch_size=16
    --config.model.encoder.tubelet_size=2 --config.data.image_size=224
    --config.data.num_frames=16 --config.model.predictor.width=384
    --config.model.predictor.depth=12 --config.model.predictor.num_heads=12
    --config.model.dtype=bfloat16 --config.model.attention_impl=auto --config.batch_size=64
    --steps=30 --rounds=3 --sync_round --matmul_size=8192)
  ATTENTION_ARGS=()
  DEFAULT_CONFIG=configs/default.py
  DATA_ARGS=(--num_videos=16 --clips=48 --train_steps=40 --num_workers=8 --model_size=base)
fi

echo "== 1/4 attention: ${ATTENTION_ARGS[*]}"
"$PY" benchmarks/attention.py "${ATTENTION_ARGS[@]}" | tee "$OUT/attention.txt"

echo "== 2/4 train step: ${STEP_ARGS[*]}"
"$PY" benchmarks/train_step.py --config=configs/benchmark_vjepa_tiny.py "${STEP_ARGS[@]}" \
  | tee "$OUT/train_step.txt"

echo "== 3/4 default job: $DEFAULT_CONFIG"
rm -rf "$OUT/default"
start=$SECONDS
"$PY" -m jepa_jax train --config="$DEFAULT_CONFIG" --workdir="$OUT/default" \
  | tee "$OUT/default_job.txt"
default_seconds=$((SECONDS - start))

echo "== 4/4 data pipeline: ${DATA_ARGS[*]}"
"$PY" benchmarks/data_pipeline.py --dir="$OUT/data" "${DATA_ARGS[@]}" | tee "$OUT/data_pipeline.txt"

# The summary: each benchmark's last line is key=value pairs.
value() { tail -n 1 "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
device=$(sed -n 's/^devices: //p' "$OUT/train_step.txt")
{
  echo ""
  echo "| $(date +%Y-%m-%d) | ${device} |"
  echo "|---|---|"
  echo "| train step clips/s | $(value "$OUT/train_step.txt" clips_per_s) |"
  echo "| model TFLOP/s per device | $(value "$OUT/train_step.txt" model_tflops_per_s) |"
  echo "| MFU | $(value "$OUT/train_step.txt" mfu) |"
  echo "| matmul GFLOP/s in the step's dtype (random operands) | $(value "$OUT/train_step.txt" matmul_gflops_per_s) |"
  echo "| attention fwd+bwd ms: cuDNN / XLA / einsum | $(value "$OUT/attention.txt" cudnn_ms) / $(value "$OUT/attention.txt" dot_product_attention_ms) / $(value "$OUT/attention.txt" einsum_ms) |"
  echo "| default job wall time (s) | ${default_seconds} |"
  echo "| mp4 clips/s per worker | $(value "$OUT/data_pipeline.txt" mp4_clips_per_s_per_worker) |"
  echo "| ArrayRecord clips/s per worker | $(value "$OUT/data_pipeline.txt" arrayrecord_clips_per_s_per_worker) |"
  echo "| data wait fraction | $(value "$OUT/data_pipeline.txt" data_wait_fraction) |"
} | tee "$OUT/summary.md"
echo "outputs in $OUT"
