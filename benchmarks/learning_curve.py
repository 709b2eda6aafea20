"""Draw a learning curve: probe accuracy of a run's encoder vs training step, with its baselines.

  jepa-jax eval --config=configs/probes/moving_shapes.py --checkpoint=workdirs/default \
      --workdir=workdirs/default/curve --all_steps
  python benchmarks/learning_curve.py workdirs/default/curve/learning_curve.json \
      --out=learning_curve.png

One line per probe (linear, attentive, kNN) of the trained encoder over the probed steps; the
random-init encoder is drawn at step 0 of each line (what training starts from), raw pixels and
chance as dashed horizontal lines. Needs matplotlib (`pip install -e '.[plots]'`).
"""

from __future__ import annotations

import argparse
import json
import sys

COLORS = {
    "linear": "tab:blue",
    "attentive": "tab:orange",
    "knn": "tab:green",
    "linear_flat": "tab:purple",
    "knn_flat": "tab:brown",
}


def plot(curve: dict, out: str, title: str | None = None) -> None:
    """Write the PNG of a learning_curve.json dict to `out`."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    random_init = curve["baselines"].get("random_init", {})
    for probe, accs in curve["trained"].items():
        steps = list(curve["steps"])
        if probe in random_init:  # training starts from a random encoder
            steps, accs = [0] + steps, [random_init[probe]] + list(accs)
        color = COLORS.get(probe)
        ax.plot(steps, accs, marker="o", color=color, label=f"trained, {probe}")
        pixels = curve["baselines"].get("pixels", {}).get(probe)
        if pixels is not None:
            ax.axhline(pixels, color=color, linestyle="--", alpha=0.6, label=f"pixels, {probe}")
    ax.axhline(curve["chance"], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("training step (step 0: random-init encoder)")
    ax.set_ylabel(f"test accuracy ({curve['task']})")
    ax.set_title(title or f"probe accuracy on '{curve['task']}' during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curve", help="learning_curve.json written by jepa-jax eval --all_steps")
    parser.add_argument("--out", default="learning_curve.png", help="PNG to write")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        with open(args.curve) as f:
            curve = json.load(f)
    except (OSError, ValueError) as e:
        print(f"learning_curve: error: cannot read {args.curve!r}: {e}", file=sys.stderr)
        return 2
    plot(curve, args.out, args.title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
