"""The preflight (issue 16, part 4): loss at init, overfitting a tiny subset, and a
generalisation check that catches shuffled labels; recorded in run.json and TensorBoard."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from kerastune_kit import preflight
from kerastune_kit.preflight import (
    Check,
    PreflightReport,
    chance_accuracy,
    chance_loss,
    check_generalization,
    check_initial_loss,
    check_overfit,
    mean_predictor_loss,
    preflight_budget,
    prior_entropy,
)

#: Tests measure outcomes, not speed: a budget no check reaches on tiny data.
NO_CAP = 120.0


# ---------------------------------------------------------------------- pure decisions
def test_chance_values_and_the_budget():
    assert chance_loss("multiclass", 10) == pytest.approx(2.302585)
    assert chance_loss("binary", 2) == pytest.approx(math.log(2))
    assert chance_loss("regression") == 1.0
    with pytest.raises(ValueError, match="n_classes"):
        chance_loss("multiclass", 1)
    assert preflight_budget(None) == 5.0
    assert preflight_budget(60) == pytest.approx(3.0)
    assert preflight_budget(3600) == 5.0
    assert chance_accuracy([0, 1, 1, 2]) == 0.5
    y_train = np.array([0.0, 2.0, 4.0])  # mean 2, variance 8/3
    assert mean_predictor_loss(y_train, y_train) == pytest.approx(1.0)
    assert mean_predictor_loss(y_train, [2.0, 2.0]) == 0.0


def test_loss_at_init_far_from_chance_is_one_line_with_its_cause():
    check = check_initial_loss(14.2, "multiclass", 10)
    assert check.passed is False
    assert check.finding == ("loss at init 14.20 vs 2.30 expected for 10 classes: inputs not "
                             "scaled, or a bad initializer")
    assert check_initial_loss(2.6, "multiclass", 10).passed is True
    assert check_initial_loss(0.9, "binary", 2).passed is True
    assert check_initial_loss(math.nan, "binary", 2).passed is False
    assert "not finite" in check_initial_loss(math.inf, "binary", 2).finding
    unscaled = check_initial_loss(515.0, "multiclass", 10, input_std=96.7, input_max=257.0)
    assert "inputs not scaled (standard deviation 96.70, largest |x| 257)" in unscaled.finding
    # regression: 1.0 predicts the mean; an untrained unit adds its output variance
    assert check_initial_loss(5.0, "regression").passed is True
    assert check_initial_loss(1e4, "regression").passed is False
    for one in (check, unscaled):
        assert "\n" not in one.finding


def test_overfit_decisions():
    failed = check_overfit("multiclass", samples=64, steps=200, initial_loss=2.3, loss=1.5,
                           accuracy=0.41)
    assert failed.passed is False
    assert failed.finding.startswith("could not overfit 64 samples (train accuracy 0.41 after "
                                     "200 steps): the model or the learning rate cannot fit")
    assert check_overfit("multiclass", samples=64, steps=16, initial_loss=2.3, loss=0.1,
                         accuracy=0.97).passed is True
    # cut short by the time cap: inconclusive, never a finding
    assert check_overfit("multiclass", samples=64, steps=16, initial_loss=2.3, loss=1.5,
                         accuracy=0.41, finished=False).passed is None
    assert "diverged" in check_overfit("binary", samples=64, steps=3, initial_loss=0.7,
                                       loss=math.nan, accuracy=0.5, diverged=True).finding
    reg = check_overfit("regression", samples=64, steps=64, initial_loss=2.0, loss=0.5)
    assert reg.passed is False and "75% lower" in reg.finding
    assert check_overfit("regression", samples=64, steps=64, initial_loss=2.0,
                         loss=0.19).passed is True


def test_generalization_decisions():
    shuffled = check_generalization("multiclass", samples=256, steps=128, val_samples=300,
                                    chance=0.11, train=0.98, val=0.12)
    assert shuffled.passed is False
    assert shuffled.finding.startswith("validation accuracy 0.12 is at chance (0.11")
    assert "labels look unrelated to the inputs (shuffled or misaligned?)" in shuffled.finding
    assert check_generalization("multiclass", samples=256, steps=16, val_samples=300,
                                chance=0.11, train=0.9, val=0.8).passed is True
    # 26 validation samples: 0.5 against a chance of 0.35 is within the accuracy's noise,
    # but a validation loss well below the class prior's entropy shows real signal
    assert check_generalization("multiclass", samples=100, steps=16, val_samples=26,
                                chance=0.35, train=0.9, val=0.5).passed is False
    assert check_generalization("multiclass", samples=100, steps=16, val_samples=26,
                                chance=0.35, train=0.9, val=0.5, val_loss=0.6,
                                prior_loss=1.09).passed is True
    with_loss = check_generalization("multiclass", samples=256, steps=128, val_samples=300,
                                     chance=0.11, train=0.98, val=0.12, val_loss=2.7,
                                     prior_loss=2.3)
    assert with_loss.passed is False
    assert "(0.11, the majority class; loss 2.70 vs the class prior's 2.30)" in \
        with_loss.finding
    assert prior_entropy([0, 1, 0, 1]) == pytest.approx(math.log(2))
    # nothing learnt, but the time cap ended the training: inconclusive
    assert check_generalization("multiclass", samples=256, steps=16, val_samples=300,
                                chance=0.11, train=0.2, val=0.1, finished=False).passed is None
    regression = check_generalization("regression", samples=256, steps=128, val_samples=75,
                                      chance=1.3, train=0.5, val=1.5)
    assert regression.passed is False and "mean predictor" in regression.finding
    assert check_generalization("regression", samples=256, steps=16, val_samples=75,
                                chance=1.3, train=0.5, val=0.8).passed is True


def test_report_lines_json_and_markdown():
    checks = [Check("initial_loss", True, {"loss": 2.31, "chance": 2.302585}),
              Check("overfit", True, {"samples": 64, "accuracy": 1.0, "loss": math.nan},
                    seconds=0.83),
              check_generalization("multiclass", samples=256, steps=128, val_samples=300,
                                   chance=0.11, train=0.98, val=0.12)]
    report = PreflightReport(checks, "mlp_2x256", {"units_0": 256}, budget_s=5.0, seconds=1.2,
                             task="multiclass")
    assert report.findings == [checks[2].finding]
    summary, warning = report.lines()
    assert summary.startswith("preflight (mlp_2x256, 1.2s): 1 finding: loss at init 2.31 "
                              "(chance 2.30); 64 samples overfit to accuracy 1.00 in 0.8s; "
                              "validation accuracy 0.12 (chance 0.11) after 256 samples")
    assert warning == f"preflight warning: {checks[2].finding}"
    saved = json.loads(json.dumps(report.to_json(), allow_nan=False))  # NaN became null
    assert saved["checks"][1]["values"]["loss"] is None
    assert saved["findings"] == report.findings and saved["seconds"] == 1.2
    assert checks[2].finding in report.markdown()


# ---------------------------------------------------------------------- real networks
def _hypermodel(dataset, model="mlp", seed=0):
    from kerastune_kit.hypermodels import factory_for
    from kerastune_kit.space import SearchSpace

    factory = factory_for(model, dataset)
    return factory.for_dataset(dataset, SearchSpace(family=factory.family), seed=seed)


def _permuted(dataset, seed=0):
    rng = np.random.default_rng(seed)
    return dataclasses.replace(dataset, y_train=rng.permutation(dataset.y_train),
                               y_val=rng.permutation(dataset.y_val))


@pytest.mark.parametrize("name, model", [("digits", "mlp"), ("digits", "cnn"), ("iris", "mlp"),
                                         ("wine", "mlp"), ("breast_cancer", "mlp"),
                                         ("diabetes", "mlp")])
def test_real_datasets_pass_without_findings(name, model):
    from kerastune_kit.data import load_dataset

    dataset = load_dataset(name, seed=0)
    report = preflight.run_preflight(dataset, _hypermodel(dataset, model), budget_s=NO_CAP)
    assert report.findings == [], report.lines()
    assert [c.name for c in report.checks] == ["initial_loss", "overfit", "generalization"]
    assert all(c.passed is True for c in report.checks), report.to_json()
    assert report.configuration == ("lenet" if model == "cnn" else "mlp_2x256")
    assert report.summary().startswith(f"preflight ({report.configuration}, ")


def test_permuted_labels_are_caught_and_the_outcome_is_deterministic():
    from kerastune_kit.data import load_dataset

    dataset = _permuted(load_dataset("digits", seed=0))
    reports = [preflight.run_preflight(dataset, _hypermodel(dataset), budget_s=NO_CAP, seed=3)
               for _ in range(2)]
    first = reports[0]
    assert first.check("overfit").passed is True  # 64 random labels are memorised ...
    generalization = first.check("generalization")  # ... but do not carry over
    assert generalization.passed is False
    assert generalization.values["val_loss"] >= generalization.values["prior_loss"]
    assert "labels look unrelated to the inputs" in first.findings[-1]
    assert generalization.values["val_accuracy"] <= generalization.values["limit"]
    assert generalization.values["train_accuracy"] >= 0.5  # training mode: with dropout
    assert reports[1].findings == first.findings
    assert reports[1].check("generalization").values == generalization.values


def test_permuted_regression_targets_are_caught():
    from kerastune_kit.data import load_dataset

    dataset = _permuted(load_dataset("diabetes", seed=0))
    report = preflight.run_preflight(dataset, _hypermodel(dataset), budget_s=NO_CAP)
    check = report.check("generalization")
    assert check.passed is False and "mean predictor" in check.finding
    assert check.values["val_loss"] > check.values["limit"]


def test_unscaled_16_bit_images_are_flagged_at_init(tmp_path):
    """16-bit pixels pass the loader's "raw pixels: divide by 255" rule and arrive at the
    network in 0..257: the loss at init is hundreds of times chance."""
    from sklearn.datasets import load_digits

    from kerastune_kit.data import load_dataset

    x, y = load_digits(return_X_y=True)
    path = tmp_path / "digits16.npz"
    np.savez(path, x=(x.reshape(-1, 8, 8) * 4096).astype("float32")[:400], y=y[:400])
    dataset = load_dataset(str(path), seed=0)
    assert dataset.preprocessing.kind == "rescale"  # the loader did scale, by 1/255
    report = preflight.run_preflight(dataset, _hypermodel(dataset, "cnn"), budget_s=2.0)
    check = report.check("initial_loss")
    assert check.passed is False
    assert check.values["loss"] > 50 * check.values["chance"]
    assert "inputs not scaled (standard deviation" in check.finding
    assert report.findings[0] == check.finding


def test_the_time_cap_makes_checks_inconclusive_not_findings():
    from kerastune_kit.data import load_dataset

    dataset = load_dataset("digits", seed=0)
    report = preflight.run_preflight(dataset, _hypermodel(dataset), budget_s=0.01)
    overfit = report.check("overfit")
    assert overfit.values["steps"] == preflight.STEPS_PER_EPOCH  # one epoch, then the cap
    assert overfit.passed in (True, None)
    assert report.check("generalization").passed is None
    assert report.check("generalization").values["skipped"]
    assert report.findings == []
    assert "validation check skipped" in report.summary()


# ---------------------------------------------------------------------- in a search
def _write_permuted_digits(path):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    np.savez(path, x=x[:600].astype("float32"),
             y=np.random.default_rng(1).permutation(y[:600]))


@pytest.mark.slow
def test_search_prints_and_records_the_findings_and_resume_skips(tmp_path):
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.rundir import RunDir
    from kerastune_kit.tuning import run_search
    from tests.tb_read import texts

    data = tmp_path / "shuffled.npz"
    _write_permuted_digits(data)
    config = SearchConfig(data=str(data), tuner="random", max_trials=1, max_epochs=1,
                          run_dir=str(tmp_path / "run"), seed=0, preflight=True)
    lines: list[str] = []
    run_search(config, on_start=lines.append)
    summary = next(line for line in lines if line.startswith("preflight ("))
    warnings = [line for line in lines if line.startswith("preflight warning: ")]
    assert lines.index(summary) == 1  # after the plan, before the first trial
    assert any("labels look unrelated to the inputs" in line for line in warnings)

    run = RunDir(config.effective_run_dir())
    saved = run.read_marker()["preflight"]
    assert saved["findings"] == [line.removeprefix("preflight warning: ") for line in warnings]
    assert [c["name"] for c in saved["checks"]] == ["initial_loss", "overfit", "generalization"]
    assert all(c["seconds"] >= 0 for c in saved["checks"])
    assert saved["checks"][2]["values"]["val_accuracy"] is not None
    assert 0 < saved["seconds"] <= saved["budget_s"] + 15  # the cap (plus a first epoch)
    panel = texts(run.search_logdir)["search/preflight"]
    assert len(panel) == 1 and saved["findings"][0] in panel[0][1]

    resumed: list[str] = []
    run_search(dataclasses.replace(config, resume=True, max_trials=2), on_start=resumed.append)
    assert not any(line.startswith("preflight") for line in resumed)
    assert run.read_marker()["preflight"] == saved  # kept from the run's start
    assert len(texts(run.search_logdir)["search/preflight"]) == 1


@pytest.mark.slow
def test_no_preflight_skips_it_and_the_preflight_leaves_the_trials_as_they_were(tmp_path,
                                                                                 capsys):
    from kerastune_kit.cli import main
    from kerastune_kit.rundir import RunDir
    from tests.tb_read import texts

    scores = {}
    for flag in ("--preflight", "--no-preflight", None):
        run = tmp_path / {"--preflight": "on", "--no-preflight": "off", None: "auto"}[flag]
        code = main(["search", "--data", "iris", "--tuner", "random", "--max-trials", "1",
                     "--max-epochs", "2", "--run-dir", str(run), *([flag] if flag else [])])
        out = capsys.readouterr().out
        assert code == 0
        marker = RunDir(run).read_marker()
        ran = flag == "--preflight"
        assert ("preflight (mlp_2x256, " in out) is ran
        assert ("search/preflight" in texts(run / "tensorboard" / "search")) is ran
        if ran:
            assert marker["preflight"]["findings"] == []
        elif flag is None:  # left to itself, a 2-epoch search is its own check; it says so
            why = "a short search (2 trial-epochs planned, under 20); --preflight runs it anyway"
            assert marker["preflight"] == {"skipped": why}
            assert f"preflight skipped: {why}" in out
        else:
            assert "preflight" not in marker
            assert not any(line.startswith("preflight") for line in out.splitlines())
        scores[flag] = json.loads((run / "best_hyperparameters.json").read_text())["score"]
    # the checks change nothing the search computes
    assert scores["--preflight"] == scores["--no-preflight"] == scores[None]


def test_a_budget_too_short_skips_it_and_says_so(tmp_path):
    from kerastune_kit.config import SearchConfig
    from kerastune_kit.rundir import RunDir

    config = SearchConfig(data="iris", max_time=5, run_dir=str(tmp_path))
    lines: list[str] = []
    assert preflight.preflight_search(config, None, None, tmp_path, say=lines.append) is None
    assert lines == ["preflight skipped: its share of the time budget is 0.25s, under 0.5s"]
    assert RunDir(tmp_path).read_marker()["preflight"]["budget_s"] == 0.25
    for off in (dict(preflight=False), dict(resume=True)):
        lines.clear()
        skipped = SearchConfig(data="iris", run_dir=str(tmp_path), **off)
        assert preflight.preflight_search(skipped, None, None, tmp_path, say=lines.append) \
            is None and lines == []


def test_the_checked_configuration_is_the_first_design_or_the_defaults():
    from kerastune_kit.data import load_dataset

    dataset = load_dataset("iris", seed=0)
    hypermodel = _hypermodel(dataset)
    name, values, hp = preflight.first_configuration(hypermodel)
    assert name == "mlp_2x256" and values["units_0"] == 256 and values["dropout_0"] == 0.2
    assert hp.values == values
    name, values, _ = preflight.first_configuration(hypermodel, baselines=False)
    assert name == "defaults"
    assert values["learning_rate"] == hypermodel.space.knobs["learning_rate"].initial
