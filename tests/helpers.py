"""Helpers shared by the test modules: the CLI in a subprocess and a run's metrics."""

import json
import os
import subprocess
import sys

from conftest import REPO


def cli(*args, env=None, check=False, **kwargs):
    """`python -m jepa_jax ARGS` in a subprocess (text output captured). `env` entries are added
    to this process's environment (a value of None removes the variable). With `check`, a
    non-zero exit raises with the output."""
    return _python(["-m", "jepa_jax", *args], env, check, **kwargs)


def benchmark(script, *args, env=None, check=False, **kwargs):
    """`python benchmarks/SCRIPT ARGS` in a subprocess, as `cli`."""
    return _python([os.path.join(REPO, "benchmarks", script), *args], env, check, **kwargs)


def last_line_fields(stdout):
    """{key: value} of the `key=value ...` last line the benchmark scripts print."""
    return dict(kv.split("=", 1) for kv in stdout.strip().splitlines()[-1].split())


def _python(argv, env, check, **kwargs):
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=full_env,
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def metrics_rows(workdir):
    """The rows of <workdir>/metrics.jsonl, in file order."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def read_losses(workdir):
    """step -> loss from metrics.jsonl; a resumed run's later record of a step wins."""
    return {r["step"]: r["loss"] for r in metrics_rows(workdir)}


def stderr_lines(proc):
    """The non-empty lines a process wrote to stderr."""
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]
