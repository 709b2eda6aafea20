"""`jepa-jax plan --checkpoint=WORKDIR [--config=configs/<file>.py] [--config.plan.<key>=<value>]
[--episodes=N] [--baselines] [--save_episode=episode.gif|.png]`

Plans with a trained world model (from `jepa-jax train` with `config.method = "world_model"`) on
random Two Rooms tasks (start and goal in different rooms, a random wall per episode): at every
replan, CEM or MPPI (`config.plan.planner`) scores `plan.samples` action sequences of
`plan.horizon` model steps by rolling them out in latent space in one vmapped call, or the
wavefront search (`plan.planner="search"`, with a distance head) expands imagined states
breadth-first until one is next to the goal; the first action(s) run in the real environment,
then it replans. Prints the success rate, the mean number
of env steps to the goal (successful episodes) and the seconds per episode; `--baselines` adds the
random-policy floor and the true-simulator ceilings on the same episodes. Results are written to
WORKDIR/plan_results.json (or --output). Without --config the run's own config (WORKDIR/config.json,
written by `jepa-jax train`) is used, and --config.plan.<key>=<value> overrides it as it would a
config file's (e.g. `--config.plan.planner=mppi`).
"""

from __future__ import annotations

import os

from absl import flags

from jepa_jax import rundir
from jepa_jax.commands.common import (
    config_or_run_config,
    define_config_flag,
    override_run_config,
    start_command,
)
from jepa_jax.errors import ConfigError

define_config_flag(
    "The world model's training config, configs/<file>.py[:arg] (default: the workdir's "
    "config.json); --config.plan.<key>=<value> changes the planner (planner, horizon, samples, "
    "iterations, energy, ...)."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Workdir of the world-model training run (its latest checkpoint is used)."
)
_EPISODES = flags.DEFINE_integer(
    "episodes", None, "Number of episodes (default: config.plan.episodes)."
)
_BASELINES = flags.DEFINE_bool(
    "baselines",
    False,
    "Also run the random-policy floor and the planner with the true simulator (straight-line, "
    "geodesic and learned latent distance) on the same episodes.",
)
_SAVE_EPISODE = flags.DEFINE_string(
    "save_episode",
    None,
    "Save the world model's first episode as an animated GIF (.gif) or a PNG strip (.png).",
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Results JSON (default: <checkpoint>/plan_results.json)."
)
flags.mark_flags_as_required(["checkpoint"])


def _run_config(checkpoint: str):
    return rundir.read_config(rundir.run_root(checkpoint))


def prepare_flags(args: list[str]) -> None:
    """Before absl parses `args` (cli calls this): --config.<key> overrides without --config
    apply to the run's own config.json (WORKDIR/config.json of --checkpoint)."""
    override_run_config(args, ("checkpoint",), _run_config)


def main(argv: list[str]) -> None:
    start_command(argv)
    config = config_or_run_config(lambda: _run_config(_CHECKPOINT.value))
    if config.get("method") != "world_model":
        raise ConfigError(
            f"config.method={config.get('method')!r}: `plan` needs a world-model config "
            f"(method 'world_model', e.g. configs/ac_two_rooms.py)"
        )
    if _EPISODES.value is not None and _EPISODES.value < 1:
        raise ConfigError(f"--episodes={_EPISODES.value} is invalid: expected an integer >= 1")
    if _SAVE_EPISODE.value:
        ext = os.path.splitext(_SAVE_EPISODE.value)[1].lower()
        if ext not in (".gif", ".png"):
            raise ConfigError(
                f"--save_episode={_SAVE_EPISODE.value!r}: expected a .gif or .png file name"
            )
    # heavy imports after flag parsing
    import jax
    import numpy as np

    from jepa_jax.planning import evaluate, mpc, visualize
    from jepa_jax.world_model.setup import restore_world_model

    mpc.settings_from_config(config.plan)  # fail fast on bad planner settings
    trainer, params, step = restore_world_model(config, _CHECKPOINT.value)
    p = config.plan
    episodes = int(p.episodes) if _EPISODES.value is None else _EPISODES.value
    k = int(config.world_model.action_chunk)
    planner = mpc.planner_description(p, k)
    print(
        f"jepa-jax plan: world model at step {step} from {_CHECKPOINT.value}; {planner}; "
        f"{episodes} episodes "
        f"(budget {p.max_steps} env steps, success radius {p.success_radius} px), "
        f"{'fixed' if config.env.fixed_wall else 'random'} walls",
        flush=True,
    )
    names = evaluate.AGENTS if _BASELINES.value else ("model",)
    results = evaluate.evaluate_all(
        config, trainer.model, params, names, episodes, log=lambda s: print(s, flush=True)
    )
    print("")
    for name in names:
        print(evaluate.format_summary(name, results[name]["summary"]))
    if _SAVE_EPISODE.value:
        res = results["model"]["result"]
        task = jax.tree.map(lambda x: np.asarray(x)[0], results["tasks"])
        visualize.save_episode(
            _SAVE_EPISODE.value, trainer.model.env, task, res["path"][0], int(res["steps"][0])
        )
        outcome = "reached the goal" if res["success"][0] else "did not reach the goal"
        print(f"saved episode 0 ({outcome} in {int(res['steps'][0])} steps): {_SAVE_EPISODE.value}")
    output = _OUTPUT.value or os.path.join(os.path.abspath(_CHECKPOINT.value), "plan_results.json")
    rundir.write_json_atomic(
        output,
        {
            "checkpoint_step": step,
            "plan": p.to_dict(),
            "env": config.env.to_dict(),
            **{name: results[name]["summary"] for name in names},
        },
    )
    print(f"results: {output}")
