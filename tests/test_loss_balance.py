"""Per-term gradient norms of the JEPA objective (train/loss_balance.py and its benchmark)."""

from __future__ import annotations

import os

import jax
import pytest
from conftest import REPO, tiny_video_config
from helpers import benchmark, last_line_fields

from jepa_jax.sharding import make_global_batch
from jepa_jax.train.loss_balance import loss_term_gradient_norms
from jepa_jax.train.setup import build_trainer


def _norms(config):
    trainer = build_trainer(config)
    with jax.set_mesh(trainer.mesh):
        batch = make_global_batch(next(iter(trainer.train_dataset())), trainer.mesh)
        state, _ = trainer.create_state()
        return loss_term_gradient_norms(
            trainer.objective, state["params"], state["target_params"], [batch], 3
        )


def _config(regularizer_weight=None, context_weight=0.0):
    config = tiny_video_config()
    if regularizer_weight is not None:
        config.regularizer.update(type="sigreg", weight=regularizer_weight)
    config.loss.context_weight = context_weight
    return config


def test_terms_add_up_and_each_scales_with_its_own_weight_only():
    base, scaled = _norms(_config(0.05)), _norms(_config(0.5))
    assert list(base) == ["prediction", "regularizer", "total"]
    for norms in (base, scaled):
        total = norms["prediction"]["loss"] + norms["regularizer"]["loss"]
        assert norms["total"]["loss"] == pytest.approx(total, rel=1e-5)
        # The regularizer acts on the context encoder's tokens, never on the predictor.
        assert norms["regularizer"]["predictor"] == 0.0
    # Ten times the weight: ten times the regularizer's value and encoder gradient (fp32
    # rounding only), the prediction term's unchanged.
    for key in ("loss", "encoder"):
        assert scaled["regularizer"][key] == pytest.approx(10 * base["regularizer"][key], rel=1e-5)
        assert scaled["prediction"][key] == pytest.approx(base["prediction"][key], rel=1e-5)
    assert base["prediction"]["encoder"] > 0 and base["regularizer"]["encoder"] > 0


def test_without_a_regularizer_prediction_is_the_whole_objective_and_dense_is_its_own_term():
    plain = _norms(_config())
    assert list(plain) == ["prediction", "total"]
    assert plain["total"] == plain["prediction"]
    dense = _norms(_config(context_weight=0.5))
    assert list(dense) == ["prediction", "dense", "total"]
    assert dense["dense"]["loss"] > 0 and dense["dense"]["encoder"] > 0


def test_joint_image_and_video_terms_are_the_streams_weighted_sums():
    from test_joint_training import joint_config

    config = joint_config()
    config.regularizer.update(type="sigreg", weight=0.05)
    norms = _norms(config)
    assert list(norms) == ["prediction", "regularizer", "total"]
    total = norms["prediction"]["loss"] + norms["regularizer"]["loss"]
    assert norms["total"]["loss"] == pytest.approx(total, rel=1e-5)


def test_benchmark_reports_the_terms_of_a_config_and_rejects_two_sources(tmp_path):
    env = {"JAX_NUM_CPU_DEVICES": "1"}
    config = os.path.join(REPO, "configs", "default.py:runlocal")
    out = benchmark("loss_balance.py", f"--config={config}", "--batches=1", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    fields = last_line_fields(out.stdout)
    assert set(fields) == {
        "prediction_encoder_grad",
        "regularizer_encoder_grad",
        "regularizer_over_prediction",
    }
    assert float(fields["regularizer_over_prediction"]) > 0
    both = benchmark("loss_balance.py", f"--config={config}", f"--run={tmp_path}", env=env)
    assert both.returncode != 0
    assert "exactly one of --config" in both.stderr.strip().splitlines()[-1]


def test_a_projector_reports_its_own_gradient_which_only_the_regularizer_gives():
    config = _config(0.05)
    config.regularizer.projector = (16, 8)
    norms = _norms(config)
    for term in norms.values():
        assert set(term) == {"loss", "encoder", "predictor", "projector"}
    # The projector sits between the context tokens and SIGReg only: the prediction term
    # (on the tokens themselves) gives it no gradient.
    assert norms["prediction"]["projector"] == 0.0
    assert norms["regularizer"]["projector"] > 0.0
    assert norms["total"]["projector"] == pytest.approx(norms["regularizer"]["projector"], rel=1e-5)
