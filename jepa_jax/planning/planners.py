"""Sampling-based trajectory optimisers over action sequences: CEM and MPPI.

Both keep a diagonal Gaussian over the sequence [H, A] and repeat: sample N sequences, project
them onto the feasible set, score all of them with ONE call of the (vmapped, batched) cost
function, and refit the Gaussian to the best `elites`:
  CEM   mean/std of the elites (unweighted);
  MPPI  weights w_i ∝ exp(-(c_i - c_min) / (temperature * (c_max - c_min))) over the elites,
        then the weighted mean/std. Dividing by the elites' cost spread makes the temperature
        scale-free: the same value works whatever the units of the energy.
The result is the final mean, projected. Everything is pure JAX (`lax.scan` over iterations), so
a planner runs inside `jit` and `vmap` (e.g. over episodes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jepa_jax.errors import need_under

CostFn = Callable[[jax.Array], jax.Array]  # actions [N, H, A] -> costs [N]
ProjectFn = Callable[[jax.Array], jax.Array]  # actions [..., H, A] -> feasible actions

PLANNERS = ("cem", "mppi")


@dataclasses.dataclass(frozen=True)
class PlannerSettings:
    """Static planner settings (hashable)."""

    kind: str = "mppi"  # cem | mppi
    samples: int = 256
    elites: int = 32
    iterations: int = 4
    temperature: float = 0.5  # MPPI only
    min_std: float = 1e-3  # floor on the std, so sampling never stops exploring entirely


def settings_from_config(plan: Mapping[str, Any]) -> PlannerSettings:
    """The planner of `config.plan`; raises ConfigError naming a bad value."""
    s = PlannerSettings(
        kind=str(plan["planner"]),
        samples=int(plan["samples"]),
        elites=int(plan["elites"]),
        iterations=int(plan["iterations"]),
        temperature=float(plan["temperature"]),
    )
    need = need_under("plan")
    need(s.kind in PLANNERS, "planner", s.kind, f"one of {PLANNERS}")
    need(s.samples >= 2, "samples", s.samples, "an integer >= 2")
    need(1 <= s.elites <= s.samples, "elites", s.elites, f"an integer in [1, {s.samples}]")
    need(s.iterations >= 1, "iterations", s.iterations, "an integer >= 1")
    need(s.temperature > 0, "temperature", s.temperature, "a number > 0")
    return s


def _refit(settings: PlannerSettings, samples: jax.Array, costs: jax.Array):
    """New (mean, std) [H, A] from samples [N, H, A] and their costs [N]."""
    neg_top, idx = jax.lax.top_k(-costs, settings.elites)
    elites, elite_costs = samples[idx], -neg_top  # best first
    if settings.kind == "cem":
        weights = jnp.full((settings.elites,), 1.0 / settings.elites)
    else:
        spread = elite_costs[-1] - elite_costs[0]
        logits = -(elite_costs - elite_costs[0]) / (settings.temperature * spread + 1e-12)
        weights = jax.nn.softmax(logits)
    w = weights[:, None, None]
    mean = jnp.sum(w * elites, axis=0)
    std = jnp.sqrt(jnp.sum(w * jnp.square(elites - mean), axis=0))
    return mean, jnp.maximum(std, settings.min_std), elite_costs[0], elites[0]


def optimize(
    settings: PlannerSettings,
    cost_fn: CostFn,
    key: jax.Array,
    init_mean: jax.Array,
    init_std: jax.Array | float,
    project: ProjectFn = lambda a: a,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Minimise cost_fn over action sequences with CEM or MPPI.

    Args:
      settings: planner kind and sizes.
      cost_fn: actions [N, H, A] -> costs [N] (lower is better); called once per iteration.
      key: PRNG key of the sampling noise.
      init_mean: [H, A] initial mean (e.g. zeros, or the previous plan shifted).
      init_std: [H, A] or scalar initial std.
      project: maps sampled sequences onto the feasible set (e.g. clips action norms).

    Returns:
      (plan [H, A] = the final mean, projected; info {"best_cost": [iterations] best sampled
       cost per iteration, "best_sample": [H, A] the best sample of the last iteration}).
    """
    std0 = jnp.broadcast_to(jnp.asarray(init_std, init_mean.dtype), init_mean.shape)

    def iteration(carry, k):
        mean, std = carry
        noise = jax.random.normal(k, (settings.samples,) + mean.shape, mean.dtype)
        samples = project(mean + std * noise)
        costs = cost_fn(samples)
        mean, std, best_cost, best = _refit(settings, samples, costs)
        return (mean, std), (best_cost, best)

    keys = jax.random.split(key, settings.iterations)
    (mean, _), (best_costs, bests) = jax.lax.scan(iteration, (init_mean, std0), keys)
    return project(mean), {"best_cost": best_costs, "best_sample": bests[-1]}
