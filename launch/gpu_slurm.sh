#!/usr/bin/env bash
#SBATCH --job-name=jepa-jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=72:00:00
#SBATCH --output=jepa-jax-%j.out
#
# Multi-node GPU training under SLURM: one JAX process per node driving all of its GPUs, joined
# by jax.distributed with process 0's node as coordinator.
#
#   sbatch launch/gpu_slurm.sh train --config=configs/vjepa_vitl16.py:videos=/data/k710.csv \
#       --workdir=/shared/runs/vitl
#   sbatch --nodes=16 launch/gpu_slurm.sh train ...       # node count from sbatch
#   launch/gpu_slurm.sh --dry-run train ...               # print the srun command, run nothing
#
# The coordinator is the first host of $SLURM_JOB_NODELIST (expanded with scontrol) at port
# $JEPA_JAX_PORT (default 29500); --num_processes is $SLURM_NTASKS and each task's
# --process_id its $SLURM_PROCID. The checkout must be on a filesystem every node sees;
# run_on_host.sh installs jepa-jax[cuda] into $JEPA_JAX_VENV on first use.
set -euo pipefail

die() { echo "gpu_slurm.sh: error: $*" >&2; exit 2; }

dry_run=0
if [[ ${1:-} == --dry-run ]]; then dry_run=1; shift; fi
[[ $# -gt 0 ]] || die "give a jepa-jax command, e.g. train --config=... --workdir=..."
[[ -n ${SLURM_JOB_NODELIST:-} && -n ${SLURM_NTASKS:-} ]] \
  || die "not inside a SLURM allocation (SLURM_JOB_NODELIST / SLURM_NTASKS unset); use sbatch"

if command -v scontrol > /dev/null; then
  head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
else  # plain comma-separated lists only (scontrol expands ranges like gpu[01-04])
  head_node=${SLURM_JOB_NODELIST%%,*}
  [[ $head_node != *\[* ]] || die "cannot expand $SLURM_JOB_NODELIST without scontrol"
fi
port=${JEPA_JAX_PORT:-29500}
here=$(cd "$(dirname "$0")" && pwd)

args=$(printf ' %q' "$@")
# SLURM_PROCID is expanded by each task's own shell, hence the single quotes.
task_cmd="JEPA_JAX_EXTRAS=\${JEPA_JAX_EXTRAS:-cuda} exec bash $here/run_on_host.sh$args"
task_cmd+=" --coordinator_address=$head_node:$port --num_processes=$SLURM_NTASKS"
task_cmd+=' --process_id=$SLURM_PROCID'
cmd=(srun --ntasks="$SLURM_NTASKS" --ntasks-per-node=1 bash -c "$task_cmd")

printf '+'; printf ' %q' "${cmd[@]}"; printf '\n'
[[ $dry_run -eq 1 ]] || exec "${cmd[@]}"
