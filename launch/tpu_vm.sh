#!/usr/bin/env bash
# Run jepa-jax on a Cloud TPU VM slice: create it, copy this checkout to every worker, run a
# jepa-jax command on all workers at once, follow the log, delete it.
#
#   launch/tpu_vm.sh [--dry-run] <create|copy|run|tail|delete> [options] [-- jepa-jax args...]
#
# Options (each also read from the environment variable in brackets):
#   --name NAME            TPU VM name                              [TPU_NAME]   (required)
#   --zone ZONE            e.g. us-east5-a                          [TPU_ZONE]   (required)
#   --project PROJECT      GCP project (default: gcloud's)          [TPU_PROJECT]
#   --accelerator TYPE     create only: e.g. v5p-128, v4-32, v6e-8  [TPU_ACCELERATOR]
#   --version VERSION      create only: TPU software version        [TPU_VERSION]
#   --spot                 create only: a spot (preemptible) slice
#   --log PATH             log file on the workers (default ~/jepa-jax.log)
#   --dry-run              print the gcloud commands, run nothing
#
# Examples:
#   launch/tpu_vm.sh create --name jj --zone us-east5-a --accelerator v5p-128 --version v2-alpha-tpuv5
#   launch/tpu_vm.sh copy   --name jj --zone us-east5-a
#   launch/tpu_vm.sh run    --name jj --zone us-east5-a -- train \
#       --config=configs/vjepa_vitl16.py:shards=gs://bucket/k710 --workdir=gs://bucket/runs/vitl
#   launch/tpu_vm.sh tail   --name jj --zone us-east5-a
#   launch/tpu_vm.sh delete --name jj --zone us-east5-a
#
# `run` starts `launch/run_on_host.sh <args>` on every worker in the background (adding
# --distributed to `train`): each worker is one JAX process, and jax.distributed finds the
# others from the TPU metadata.
# Every command is printed before it runs.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "tpu_vm.sh: error: $*" >&2; exit 2; }

dry_run=0
action=""
name=${TPU_NAME:-}
zone=${TPU_ZONE:-}
project=${TPU_PROJECT:-}
accelerator=${TPU_ACCELERATOR:-}
version=${TPU_VERSION:-}
spot=0
log="~/jepa-jax.log"
jj_args=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --name) name=${2:?--name needs a value}; shift ;;
    --zone) zone=${2:?--zone needs a value}; shift ;;
    --project) project=${2:?--project needs a value}; shift ;;
    --accelerator) accelerator=${2:?--accelerator needs a value}; shift ;;
    --version) version=${2:?--version needs a value}; shift ;;
    --spot) spot=1 ;;
    --log) log=${2:?--log needs a value}; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; jj_args=("$@"); break ;;
    create|copy|run|tail|delete)
      [[ -z $action ]] || die "two actions given: $action and $1"
      action=$1 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

[[ -n $action ]] || die "no action; expected one of create, copy, run, tail, delete (see --help)"
[[ -n $name ]] || die "--name (or TPU_NAME) is required"
[[ -n $zone ]] || die "--zone (or TPU_ZONE) is required"

common=(--zone="$zone")
[[ -n $project ]] && common+=(--project="$project")

# Print a command (shell-quoted), then run it unless --dry-run.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $dry_run -eq 0 ]]; then "$@"; fi
}

repo=$(cd "$(dirname "$0")/.." && pwd)
case "$action" in
  create)
    [[ -n $accelerator ]] || die "create needs --accelerator (e.g. v5p-128)"
    [[ -n $version ]] || die "create needs --version (the TPU software version, e.g. v2-alpha-tpuv5)"
    extra=()
    [[ $spot -eq 1 ]] && extra+=(--spot)
    run gcloud compute tpus tpu-vm create "$name" "${common[@]}" \
      --accelerator-type="$accelerator" --version="$version" "${extra[@]}"
    ;;
  copy)
    # The tracked files of this checkout (no virtualenv, no run outputs), unpacked on every worker.
    tarball=$(mktemp -t jepa-jax-XXXXXX.tar.gz)
    run git -C "$repo" archive --format=tar.gz --prefix=jepa-jax/ -o "$tarball" HEAD
    run gcloud compute tpus tpu-vm scp "$tarball" "$name:~/jepa-jax.tar.gz" "${common[@]}" --worker=all
    run gcloud compute tpus tpu-vm ssh "$name" "${common[@]}" --worker=all \
      --command="rm -rf ~/jepa-jax && tar -xzf ~/jepa-jax.tar.gz -C ~ && rm ~/jepa-jax.tar.gz"
    rm -f "$tarball"
    ;;
  run)
    [[ ${#jj_args[@]} -gt 0 ]] || die "run needs a jepa-jax command after --, e.g. -- train --config=... --workdir=..."
    # Training joins the multi-host run; other commands (compile, eval, ...) run as given.
    [[ ${jj_args[0]} == train ]] && jj_args+=(--distributed)
    remote=$(printf ' %q' "${jj_args[@]}")
    run gcloud compute tpus tpu-vm ssh "$name" "${common[@]}" --worker=all \
      --command="cd ~/jepa-jax && JEPA_JAX_EXTRAS=tpu nohup bash launch/run_on_host.sh${remote} > $log 2>&1 &"
    ;;
  tail)
    run gcloud compute tpus tpu-vm ssh "$name" "${common[@]}" --worker=0 --command="tail -n 200 -F $log"
    ;;
  delete)
    run gcloud compute tpus tpu-vm delete "$name" "${common[@]}" --quiet
    ;;
esac
