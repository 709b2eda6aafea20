#!/usr/bin/env bash
# One host's part of a run: create (once) a virtualenv with this checkout of jepa-jax, then run
# `jepa-jax <args>` in it. Used by tpu_vm.sh and gpu_slurm.sh on every worker.
#
#   JEPA_JAX_VENV    virtualenv directory (default ~/.jepa-jax-venv)
#   JEPA_JAX_EXTRAS  extras to install: tpu (libtpu) on TPU VMs, cuda on GPU nodes (default: none)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${JEPA_JAX_VENV:-$HOME/.jepa-jax-venv}
extras=${JEPA_JAX_EXTRAS:-}
spec="."
[[ -n $extras ]] && spec=".[${extras}]"
if [[ ! -x $venv/bin/jepa-jax ]]; then
  echo "run_on_host.sh: installing jepa-jax$([[ -n $extras ]] && echo "[$extras]") into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check -q -e "$spec"
fi
exec "$venv/bin/jepa-jax" "$@"
