"""Collapse regularizers on encoder features: VICReg's variance/covariance terms and LeJEPA's
SIGReg, selected by `config.regularizer` (type "none" by default, so plain JEPA is unchanged).

Both act on a matrix of samples Z [N, D]. The objective feeds them the context encoder's output
tokens (every token of every example of every mask config is a sample): those are the features
the gradient reaches, with or without an EMA target.

SIGReg (Balestriero & LeCun, LeJEPA): draw M random unit directions a_m, project x_m = Z a_m and
measure how far each 1-D sample is from N(0, 1) with the Epps-Pulley statistic

    T_m = N * integral |phi_hat_m(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt,
    phi_hat_m(t) = mean_n exp(i t x_mn),

by the trapezoid rule on [0, t_max] with doubled weights (the integrand is even); SIGReg is the
mean of T_m over directions. Constants as the reference: t_max 3, 17 points (odd). Directions are
redrawn every step from a key folded with the step, so runs reproduce and resume exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.errors import ConfigError, need_under

REGULARIZERS = ("none", "vicreg", "sigreg")


def vicreg_terms(
    z: jax.Array, std_target: float = 1.0, eps: float = 1e-4
) -> tuple[jax.Array, jax.Array]:
    """VICReg's variance and covariance terms of samples z [..., D] (every leading axis pooled
    into N samples; float32 scalars). The one VICReg of the package (JEPA and world model).

    variance   = mean_d relu(std_target - sqrt(Var_n z_d + eps))  (keeps every std up)
    covariance = sum_{i != j} Cov(z)_ij^2 / D                     (decorrelates the dimensions)

    Variances and covariances are unbiased (divided by N - 1), as the references' torch.var.
    """
    z = z.reshape(-1, z.shape[-1]).astype(jnp.float32)
    n, d = z.shape
    z = z - z.mean(axis=0)
    std = jnp.sqrt(jnp.square(z).sum(axis=0) / max(n - 1, 1) + eps)
    variance = jnp.maximum(0.0, std_target - std).mean()
    cov = (z.T @ z) / max(n - 1, 1)
    off_diagonal = cov - jnp.diag(jnp.diag(cov))
    return variance, jnp.square(off_diagonal).sum() / d


def epps_pulley_quadrature(t_max: float, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t [P] on [0, t_max] and weights [P] of the trapezoid rule for the integral over
    [-t_max, t_max] of an even integrand times the window exp(-t^2/2) (folded into the weights).
    """
    if num_points < 3 or num_points % 2 == 0:
        raise ValueError(f"num_points must be odd and >= 3, got {num_points}")
    t = np.linspace(0.0, t_max, num_points)
    dt = t_max / (num_points - 1)
    weights = np.full(num_points, 2.0 * dt)  # doubled: the [-t_max, 0] half by symmetry
    weights[[0, -1]] = dt
    return t, weights * np.exp(-0.5 * t * t)


# sin(a) and cos(a) as float32 polynomials: XLA's CPU backend evaluates jnp.sin / jnp.cos at
# ~7 ns per element each, and the Epps-Pulley statistic takes both at N x slices x points
# values (SIGReg was ~8% of the default job's step); one shared range reduction and two short
# polynomials (vectorised plain arithmetic) do both in ~1.8 ns.
# Cody-Waite reduction by pi/2 in three parts (the first with 9 significant bits, so k * it is
# exact in float32 for |k| < 2^15), then Cephes' sinf / cosf minimax polynomials on [-pi/4, pi/4].
_PI_2_PARTS = (
    np.float32(1.5703125),
    np.float32(4.837512969970703125e-4),
    np.float32(7.54978995489188216e-8),
)
_SIN_COEFFS = (
    np.float32(-1.6666654611e-1),
    np.float32(8.3321608736e-3),
    np.float32(-1.9515295891e-4),
)
_COS_COEFFS = (
    np.float32(4.166664568298827e-2),
    np.float32(-1.388731625493765e-3),
    np.float32(2.443315711809948e-5),
)


@jax.custom_jvp
def sincos(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sin(a), cos(a)) of float32 a (any shape), each within 2^-22 (two float32 ulps of 1) of
    the exact values of the same float32 inputs for |a| <= 1e4 (tests/test_regularizers.py;
    1.1e-7 measured up to 1e6). Its derivatives (cos, -sin) reuse the values."""
    k = jnp.round(a * np.float32(2 / np.pi))
    r = a
    for part in _PI_2_PARTS:
        r = r - k * part
    r2 = r * r
    s1, s2, s3 = _SIN_COEFFS
    c1, c2, c3 = _COS_COEFFS
    sin_r = r + r * r2 * (s1 + r2 * (s2 + r2 * s3))
    cos_r = 1.0 - 0.5 * r2 + r2 * r2 * (c1 + r2 * (c2 + r2 * c3))
    quadrant = k.astype(jnp.int32) & 3  # a = k pi/2 + r: rotate (sin r, cos r) by k quarters
    odd = (quadrant & 1) == 1
    sin = jnp.where(odd, cos_r, sin_r)
    cos = jnp.where(odd, sin_r, cos_r)
    sin = jnp.where(quadrant >= 2, -sin, sin)
    cos = jnp.where((quadrant == 1) | (quadrant == 2), -cos, cos)
    return sin, cos


@sincos.defjvp
def _sincos_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    sin, cos = sincos(a)
    return (sin, cos), (cos * da, -sin * da)


def epps_pulley(
    x: jax.Array, t_max: float = 3.0, num_points: int = 17, sample_weights: jax.Array | None = None
) -> jax.Array:
    """Epps-Pulley statistic of each column of x [N, M] against N(0, 1): float32 [M].

    About 0 for Gaussian columns (its scale is that of a chi-square: O(1) under the null) and
    growing with N otherwise. `sample_weights` [N] (>= 0) make the empirical characteristic
    function a weighted mean: the statistic of the distribution that draws row n with
    probability w_n / sum(w) (integer weights equal repeating rows; uniform ones change nothing).
    """
    t, weights = epps_pulley_quadrature(t_max, num_points)
    n = x.shape[0]
    xt = x.astype(jnp.float32)[..., None] * jnp.asarray(t, jnp.float32)  # [N, M, P]
    sin_xt, cos_xt = sincos(xt)
    if sample_weights is None:
        cos_mean = cos_xt.mean(axis=0)  # [M, P]
        sin_mean = sin_xt.mean(axis=0)
    else:
        p = sample_weights.astype(jnp.float32) / jnp.sum(sample_weights)
        cos_mean = jnp.einsum("n,nmp->mp", p, cos_xt)
        sin_mean = jnp.einsum("n,nmp->mp", p, sin_xt)
    gauss_cf = jnp.asarray(np.exp(-0.5 * t * t), jnp.float32)
    err = jnp.square(cos_mean - gauss_cf) + jnp.square(sin_mean)
    return n * (err @ jnp.asarray(weights, jnp.float32))


def random_directions(key: jax.Array, dim: int, num: int) -> jax.Array:
    """`num` random unit vectors in R^dim, as the columns of a float32 [dim, num] matrix."""
    a = jax.random.normal(key, (dim, num), jnp.float32)
    return a / jnp.linalg.norm(a, axis=0, keepdims=True)


def sigreg(
    z: jax.Array,
    key: jax.Array,
    num_slices: int = 256,
    t_max: float = 3.0,
    num_points: int = 17,
    sample_weights: jax.Array | None = None,
) -> jax.Array:
    """SIGReg of samples z [N, D] (optionally weighted, [N]): mean Epps-Pulley statistic of
    `num_slices` random 1-D projections (float32 scalar)."""
    directions = random_directions(key, z.shape[-1], num_slices)
    proj = z.astype(jnp.float32) @ directions
    return epps_pulley(proj, t_max, num_points, sample_weights).mean()


TOKEN_WEIGHTINGS = ("uniform", "pixel_deviation")


def pixel_deviation_weights(patches: jax.Array) -> jax.Array:
    """Per-token weights [B, N] from pixel patches [B, N, P]: each patch's mean squared
    deviation from its clip's mean patch, over the clip's mean of that (so they average 1).

    Why: per-token SIGReg asks every direction of the token distribution to look Gaussian; with
    uniform weights most tokens of a scene are plain background, so the regularizer spreads the
    background's tokens and the objects lose their salience (docs/default_job_experiments.md).
    Weighting tokens by how much their pixels stand out from the clip lets the tokens
    that carry content fill the distribution instead. Computed from the input only, no labels.
    """
    p = patches.astype(jnp.float32)
    dev = jnp.square(p - p.mean(axis=1, keepdims=True)).mean(axis=-1)
    return jax.lax.stop_gradient(dev / (dev.mean(axis=1, keepdims=True) + 1e-6))


@dataclasses.dataclass(frozen=True)
class Regularizer:
    """A configured regularizer: `__call__(z [N, D], key)` -> (weighted scalar, metrics)."""

    kind: str  # one of REGULARIZERS, not "none"
    weight: float
    num_slices: int = 256
    t_max: float = 3.0
    num_points: int = 17
    vicreg_covariance_weight: float = 0.04
    token_weighting: str = "uniform"  # one of TOKEN_WEIGHTINGS (SIGReg's samples)
    projector: tuple[int, ...] = ()  # (hidden, out) of the token projector; () = none

    def __call__(
        self, z: jax.Array, key: jax.Array, sample_weights: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """z [N, D]; `sample_weights` [N] weight SIGReg's samples (VICReg ignores them)."""
        if self.kind == "sigreg":
            value = sigreg(z, key, self.num_slices, self.t_max, self.num_points, sample_weights)
            return self.weight * value, {"sigreg": value}
        variance, covariance = vicreg_terms(z)
        value = variance + self.vicreg_covariance_weight * covariance
        return self.weight * value, {"vicreg_variance": variance, "vicreg_covariance": covariance}


def regularizer_from_config(config: Mapping[str, Any]) -> Regularizer | None:
    """The regularizer of `config.regularizer` (None for type "none"); ConfigError if invalid."""
    r = config["regularizer"]

    section = need_under("regularizer")

    def need(cond: bool, key: str, expected: str) -> None:
        section(cond, key, r[key], expected)

    need(r["type"] in REGULARIZERS, "type", f"one of {REGULARIZERS}")
    if r["type"] == "none":
        return None
    need(float(r["weight"]) >= 0, "weight", "a number >= 0")
    need(int(r["num_slices"]) >= 1, "num_slices", "an integer >= 1")
    need(float(r["t_max"]) > 0, "t_max", "a number > 0")
    n = int(r["num_points"])
    need(n >= 3 and n % 2 == 1, "num_points", "an odd integer >= 3 (trapezoid nodes)")
    need(float(r["vicreg_covariance_weight"]) >= 0, "vicreg_covariance_weight", "a number >= 0")
    weighting = str(r.get("token_weighting", "uniform"))
    expected = f"one of {TOKEN_WEIGHTINGS}"
    section(weighting in TOKEN_WEIGHTINGS, "token_weighting", weighting, expected)
    # VICReg's moments are unweighted: a weighting there would silently do nothing.
    uniform_only = f"'uniform' with type={r['type']!r} (token weights are SIGReg's)"
    section(
        weighting == "uniform" or r["type"] == "sigreg", "token_weighting", weighting, uniform_only
    )
    projector = r.get("projector", ())
    # A config file or plain dict may hold it as a list (rundir.read_config already gives a
    # run's config.json back as tuples); anything else that is not a pair stays as given, so
    # the error below names it.
    projector = tuple(projector) if isinstance(projector, (list, tuple)) else projector
    section(
        projector == ()
        or (
            isinstance(projector, tuple)
            and len(projector) == 2
            and all(isinstance(d, int) and d >= 1 for d in projector)
        ),
        "projector",
        projector,
        "() or (hidden, out): two integers >= 1",
    )
    return Regularizer(
        kind=str(r["type"]),
        weight=float(r["weight"]),
        num_slices=int(r["num_slices"]),
        t_max=float(r["t_max"]),
        num_points=n,
        vicreg_covariance_weight=float(r["vicreg_covariance_weight"]),
        token_weighting=weighting,
        projector=projector,
    )


def target_mode_from_config(config: Mapping[str, Any]) -> tuple[bool, bool]:
    """(ema, stop_gradient) of `config.target`; ConfigError for a combination that cannot work.

    Without EMA the target is the online encoder itself; only then can the gradient flow
    through the target (stop_gradient False): an EMA copy is never differentiated.
    """
    ema, stop_gradient = bool(config["target"]["ema"]), bool(config["target"]["stop_gradient"])
    if ema and not stop_gradient:
        raise ConfigError(
            "config.target.stop_gradient=False needs config.target.ema=False: the EMA target is "
            "a separate copy that no gradient reaches, so only an online target can be "
            "differentiated"
        )
    return ema, stop_gradient
