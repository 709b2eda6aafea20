"""The collapse guard: it flags a run whose target features collapse, and stays silent on a
healthy one."""

import pytest
from conftest import tiny_video_config
from helpers import metrics_rows

from jepa_jax.errors import RunError
from jepa_jax.train.loop import train


def forced_collapse_config():
    """No EMA and the gradient through the target: the shortcut to a collapsed representation.
    In 60 steps the effective rank falls from ~12.7 to below 5 (40% of it)."""
    config = tiny_video_config()
    config.target.update(ema=False, stop_gradient=False)
    config.update(total_steps=60, log_every=10, checkpoint_every=60, collapse_rank_fraction=0.5)
    return config


def test_collapse_guard_warns_on_a_forced_collapse(tmp_path, capsys):
    train(forced_collapse_config(), str(tmp_path))
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if "representation collapse at step" in ln]
    assert len(warnings) == 1, err  # once, naming the values
    assert warnings[0].startswith("jepa-jax: warning: ") and "effective rank" in warnings[0]
    rows = metrics_rows(tmp_path)
    assert rows[0]["collapse"] == 0.0 and rows[-1]["collapse"] == 1.0
    assert rows[-1]["effective_rank"] < 0.5 * rows[0]["effective_rank"]


def test_stop_on_collapse_ends_the_run(tmp_path):
    config = forced_collapse_config()
    config.stop_on_collapse = True
    with pytest.raises(RunError, match=r"representation collapse at step \d+: .* stopped"):
        train(config, str(tmp_path))


def test_collapse_guard_is_silent_on_a_healthy_run(tmp_path, capsys):
    config = tiny_video_config()
    config.update(total_steps=60, log_every=10, checkpoint_every=60)
    train(config, str(tmp_path))
    assert "representation collapse" not in capsys.readouterr().err
    assert all(row["collapse"] == 0.0 for row in metrics_rows(tmp_path))
