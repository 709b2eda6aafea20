"""Planning benchmark on Two Rooms: train (or reuse) a world model, then measure planning.

Prints, on the same random-wall tasks (start and goal in different rooms): the world model's
success rate, mean env steps to the goal and seconds per episode; the random-policy floor; and
the ceilings of the same planner with the true simulator (straight-line distance, wall-aware
geodesic distance, and the learned latent distance); the latent energy's rank correlation with
the true distance-to-go; the rollout's drift (position error of a linear read-out of
open-loop predicted latents, by model step, up to the planning horizon); and whether the
predictor knows the wall (its predicted move in free space, through the door, into the wall).
`--energy_plot=PNG` draws the planning distance against the true one; `--failure_plot=PNG` maps
it over the arena for the model's failed episodes, with their paths (why did it get stuck?) and,
with plan.planner="search", the imagined states of each episode's first search.
If WORKDIR has no checkpoint at config.total_steps yet, the model is trained (or resumed) first
and the training wall time is reported and kept in WORKDIR/train_time.json.
The machine may be shared: times are wall-clock and as noisy as its load.

  python benchmarks/planning.py --workdir=workdirs/ac_two_rooms            # train, then plan
  python benchmarks/planning.py --workdir=workdirs/ac_two_rooms --episodes=50
  python benchmarks/planning.py --workdir=/tmp/ac --config=configs/ac_two_rooms.py:runlocal

Last line: success_rate=... final_success_rate=... seconds_per_episode=... train_seconds=...
random_success_rate=... simulator_success_rate=... simulator_geodesic_success_rate=...
simulator_latent_success_rate=... energy_spearman_geodesic=... rollout_drift_px=... (at the
planning horizon) wall_predicted_move_px=...
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from jepa_jax.commands.common import define_config_flag, loaded_config, start_command  # noqa: E402
from jepa_jax.rundir import write_json_atomic  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
define_config_flag("World-model config.", os.path.join(REPO, "configs", "ac_two_rooms.py"))
_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory (trained if needed).")
_EPISODES = flags.DEFINE_integer("episodes", None, "Episodes (default: config.plan.episodes).")
_AGENTS = flags.DEFINE_list(
    "agents",
    "model,random,simulator,simulator_geodesic,simulator_latent",
    "Agents to evaluate, in order.",
)
_ENERGY_PLOT = flags.DEFINE_string(
    "energy_plot",
    "",
    "Also draw the learned latent distance against the true geodesic distance to the goal as a "
    "PNG at this path (needs matplotlib).",
)
_FAILURE_PLOT = flags.DEFINE_string(
    "failure_plot",
    "",
    "Also draw, for up to 6 of the model's failed episodes (its first episodes if none failed), "
    "the planning distance to the goal over the whole arena beside the true geodesic distance, "
    "with the episode's path, as a PNG at this path (needs matplotlib and the 'model' agent).",
)
flags.mark_flags_as_required(["workdir"])

TRAIN_TIME_FILE = "train_time.json"


def trained_steps(workdir: str) -> int | None:
    """The latest checkpoint step in workdir, or None."""
    from jepa_jax.checkpoint import Checkpointer

    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        return None
    ckpt = Checkpointer(workdir, 1, 1, async_save=False)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def train_if_needed(config, workdir: str) -> float | None:
    """Train (or resume) to config.total_steps. Returns the run's total training seconds as timed
    by this benchmark (summed over the calls that trained it), or None if part of the run was
    trained elsewhere (e.g. by `jepa-jax train`)."""
    from jepa_jax.world_model import loop

    record = os.path.join(workdir, TRAIN_TIME_FILE)
    previous = {"steps": None, "seconds": 0.0}
    if os.path.exists(record):
        with open(record) as f:
            previous = json.load(f)
    done = trained_steps(workdir)
    # Seconds known for the `done` steps already trained: 0 for a new run.
    known = previous["seconds"] if done == previous["steps"] else None
    if done is not None and done >= int(config.total_steps):
        return known
    out = loop.train(config, workdir)
    if out["interrupted"]:
        raise SystemExit("training was interrupted; run the same command to resume")
    seconds = None if known is None else known + out["train_seconds"]
    write_json_atomic(record, {"steps": int(config.total_steps), "seconds": seconds})
    return seconds


def plot_energy(quality: dict, path: str) -> None:
    """Scatter of latent distance (y) vs geodesic distance to the goal (x), one colour per side of
    the wall: what a planner following the energy sees."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    geodesic, latent = quality["geodesic"].ravel(), quality["latent"].ravel()
    detour = geodesic - quality["euclidean"].ravel() > 1.0  # the wall is in the way
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.scatter(geodesic[~detour], latent[~detour], s=6, alpha=0.5, label="straight path")
    ax.scatter(geodesic[detour], latent[detour], s=6, alpha=0.5, label="around the wall")
    ax.set_xlabel("true geodesic distance to the goal (px)")
    ax.set_ylabel("latent distance to the goal")
    rho = quality["spearman_geodesic"]
    ax.set_title(f"learned energy vs distance-to-go (Spearman {rho:.2f})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path} ({int(np.size(geodesic))} points)")


def plot_failures(
    model, params, distance: str, tasks: dict, result: dict, path: str, search_from=None
) -> None:
    """Top row: the planning distance to the goal at every free position (white: wall), bottom
    row: the true geodesic distance; each with the episode's path (red), start (green dot) and
    goal (red star), one column per failed episode (up to 6). search_from: with the search
    planner, task -> its first search (evaluate.first_search), whose imagined states are drawn
    on the top row (white dots, the model's predicted positions)."""
    import jax
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jepa_jax.planning import evaluate

    success = np.asarray(result["success"], bool)
    failed = np.flatnonzero(~success)
    shown = (failed if failed.size else np.arange(success.size))[:6]
    fig, axes = plt.subplots(2, len(shown), figsize=(2.6 * len(shown), 5.2), dpi=110)
    axes = np.asarray(axes).reshape(2, len(shown))
    for col, e in enumerate(shown):
        layout = jax.tree.map(lambda x, e=e: x[e], tasks["layout"])
        goal = np.asarray(tasks["goal"][e])
        field = evaluate.distance_field(model, params, model.env, distance, layout, goal)
        c = field["coords"]
        extent = (c[0], c[-1], c[0], c[-1])
        rows = ((field["planning"], f"planning distance ({distance})"),
                (field["geodesic"], "true geodesic (px)"))  # fmt: skip
        walk, start = np.asarray(result["path"][e]), np.asarray(tasks["start"][e])
        outcome = "reached" if success[e] else "failed"
        for row, (values, name) in enumerate(rows):
            ax = axes[row, col]
            masked = np.where(field["free"], values, np.nan)
            ax.imshow(masked, origin="lower", extent=extent, cmap="viridis")
            ax.contour(c, c, masked, levels=12, colors="white", linewidths=0.4)
            if row == 0 and search_from is not None:
                task = jax.tree.map(lambda x, e=e: x[e], tasks)
                found = search_from(task)
                seen = np.asarray(found["visited"])[np.asarray(found["visited_mask"])]
                ax.plot(seen[:, 0], seen[:, 1], ".", color="white", ms=1.5, alpha=0.8)
            ax.plot(walk[:, 0], walk[:, 1], "r-", lw=1.2)
            ax.plot(*start, "o", color="lime", ms=5)
            ax.plot(*goal, "r*", ms=10)
            ax.set_xlim(extent[:2])  # the imagined states must not widen the map
            ax.set_ylim(extent[2:])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"episode {e} ({outcome})\n{name}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path} ({len(shown)} episodes: {', '.join(str(int(e)) for e in shown)})")


def main(argv):
    start_command(argv)
    agents = tuple(_AGENTS.value)
    if _FAILURE_PLOT.value and "model" not in agents:  # before any training
        raise SystemExit(f"--failure_plot needs the 'model' agent; --agents={','.join(agents)}")
    config = loaded_config()
    workdir = os.path.abspath(_WORKDIR.value)
    train_seconds = train_if_needed(config, workdir)

    from jepa_jax.envs import trajectories
    from jepa_jax.planning import evaluate, mpc
    from jepa_jax.world_model.setup import restore_world_model

    trainer, params, step = restore_world_model(config, workdir)
    p = config.plan
    episodes = int(p.episodes) if _EPISODES.value is None else _EPISODES.value
    planner = mpc.planner_description(p, config.world_model.action_chunk)
    print(
        f"world model at step {step}; {planner}; "
        f"{episodes} episodes, budget {p.max_steps} env steps, radius {p.success_radius} px, "
        f"{'fixed' if config.env.fixed_wall else 'random'} walls",
        flush=True,
    )
    results = evaluate.evaluate_all(
        config, trainer.model, params, agents, episodes, log=lambda s: print(s, flush=True)
    )
    print("")
    for name in agents:
        print(evaluate.format_summary(name, results[name]["summary"]))
    env = trainer.model.env
    quality = evaluate.energy_quality(trainer.model, params, env, str(p.distance), int(p.seed))
    print(
        f"planning distance ({p.distance}) vs true distance to the goal (Spearman, mean over "
        f"{quality['latent'].shape[0]} layouts x {quality['latent'].shape[1]} positions): "
        f"geodesic {quality['spearman_geodesic']:.3f}, straight line "
        f"{quality['spearman_euclidean']:.3f}"
    )
    if _ENERGY_PLOT.value:
        plot_energy(quality, _ENERGY_PLOT.value)
    if _FAILURE_PLOT.value:  # main checked that "model" is among the agents
        search_from = None
        if p.planner == "search":
            settings = mpc.settings_from_config(p)
            agent = evaluate.planning_agent("model", config, trainer.model)
            search_from = lambda task: evaluate.first_search(settings, agent, params, task)
        plot_failures(
            trainer.model,
            params,
            str(p.distance),
            results["tasks"],
            results["model"]["result"],
            _FAILURE_PLOT.value,
            search_from,
        )
    policy = trajectories.policy_from_config(config.world_model)
    drift = evaluate.rollout_accuracy(trainer.model, params, policy, int(p.seed), int(p.horizon))
    horizon = int(p.horizon)
    shown = sorted({h for h in (1, 2, 4, 8, 16, 24, 32, 48) if h <= horizon} | {horizon})
    print(
        "rollout drift (a ridge probe latent -> position read on open-loop predictions, px; on "
        "the true latents in brackets): "
        + ", ".join(
            f"step {h} {drift['predicted_px'][h - 1]:.1f} ({drift['true_px'][h - 1]:.1f})"
            for h in shown
        )
    )
    walls = evaluate.collision_awareness(trainer.model, params, int(p.seed))
    print(
        "collisions (one model step pushing right at full speed; x-move true -> predicted, px): "
        + ", ".join(
            f"{case} {walls[case]['true_px']:.1f} -> {walls[case]['predicted_px']:.1f}"
            for case in evaluate.COLLISION_CASES
        )
    )
    print(
        "training: "
        + ("not timed by this benchmark" if train_seconds is None else f"{train_seconds:.0f} s")
    )
    figures = {}
    if "model" in agents:
        s = results["model"]["summary"]
        figures.update(
            success_rate=s["success_rate"],
            final_success_rate=s["final_success_rate"],
            mean_steps_to_goal=s["mean_steps_to_goal"],
            seconds_per_episode=s["seconds_per_episode"],
        )
    figures["train_seconds"] = float("nan") if train_seconds is None else train_seconds
    figures["energy_spearman_geodesic"] = quality["spearman_geodesic"]
    figures["rollout_drift_px"] = float(drift["predicted_px"][-1])
    figures["wall_predicted_move_px"] = walls["wall"]["predicted_px"]
    for name in agents:
        if name != "model":
            figures[f"{name}_success_rate"] = results[name]["summary"]["success_rate"]
    print(" ".join(f"{k}={v:.4g}" for k, v in figures.items()))


if __name__ == "__main__":
    app.run(main)
