"""What TensorBoard's dashboards open on after a search, read over HTTP from a real ``tensorboard``
on 127.0.0.1: the HParams plugin's hparam and metric order and default selection (the query pane
ticks the first five of each; ``differs`` hparams come first), the outcome column, diverged
trials without a plausible score, and the search-level panels in the run ``search``."""

from __future__ import annotations

import math
import shlex
import shutil

import pytest

from kerastune_kit.config import SearchConfig
from kerastune_kit.importance import hyperparameter_importance, knob_order, leading_knobs
from kerastune_kit.report import markdown_leaderboard
from kerastune_kit.results import OUTCOMES, TrialRecord, read_trial_records
from kerastune_kit.rundir import SEARCH_RUN, SEARCH_RUN_URL, RunDir
from tests import tb_read
from tests.tb_server import tensorboard_server

keras = pytest.importorskip("keras")
from kerastune_kit import load_results  # noqa: E402
from kerastune_kit.tuning import run_search  # noqa: E402

#: The query pane ticks this many hparams and metrics (tf-hparams-query-pane.ts).
SHOWN = 5
#: Trial-level metrics after the epoch curves.
LATER_METRICS = [("", "trial/best_epoch"), ("", "trial/epochs"), ("", "trial/wall_time_s"),
                 ("", "trial/peak_memory_mb"), ("", "trial/outcome_code")]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A random search on iris: 10 trials of up to 3 epochs, a learning rate of 3e4 among the
    choices (trials that diverge), a lenient percentile pruner (a chance-level trial is pruned),
    and a copy of the log directory taken after the 3rd trial (before importance is known)."""
    root = tmp_path_factory.mktemp("dashboard")
    run_dir, early = root / "run", root / "early"

    def copy_early(record: TrialRecord) -> None:
        if not early.exists() and len(read_trial_records(run_dir / "tuner")) >= 3:
            shutil.copytree(run_dir / "tensorboard", early)

    config = SearchConfig(data="iris", tuner="random", max_trials=10, max_epochs=3, seed=0,
                          run_dir=str(run_dir), preflight=False, baselines=False,
                          test_split=0.0, pruner="percentile", pruner_percentile=75.0,
                          pruner_warmup_trials=3,
                          overrides={"learning_rate": [0.003, 0.01, 0.03, 30000.0]})
    result = run_search(config, on_trial=copy_early)
    with tensorboard_server(run_dir / "tensorboard") as server:
        final = {"experiment": server.hparams_experiment(), "groups": server.session_groups(),
                 "text": server.get("/data/plugin/text/tags"),
                 "images": server.get("/data/plugin/images/tags"),
                 "runs": server.get("/data/runs")}
    with tensorboard_server(early) as server:
        first = {"experiment": server.hparams_experiment()}
    return result, first, final


def _hparams(experiment: dict) -> list[tuple[str, bool]]:
    return [(info["name"], bool(info.get("differs"))) for info in experiment["hparamInfos"]]


def _metrics(experiment: dict) -> list[tuple[str, str]]:
    return [(m["name"].get("group", ""), m["name"]["tag"]) for m in experiment["metricInfos"]]


def _assert_ticked_first(hparams: list[tuple[str, bool]], ticked: list[str]) -> None:
    """The plugin lists ``differs`` hparams first, each group by name, and ticks the first 5."""
    names = [name for name, _ in hparams]
    wanted = sorted([*ticked, "outcome"])
    assert names[:SHOWN] == wanted, names
    assert all(differs for _, differs in hparams[:SHOWN])
    assert not any(differs for _, differs in hparams[SHOWN:])
    assert names[SHOWN:] == sorted(names[SHOWN:])


@pytest.mark.slow
def test_before_importance_the_recipe_knobs_are_first_and_ticked(searched):
    result, first, _ = searched
    hparams = _hparams(first["experiment"])
    _assert_ticked_first(hparams, ["learning_rate", "optimizer", "num_layers", "units_0"])
    # (alphabetically activation, batch_size, clipnorm, dropout_0 would lead)
    assert [name for name, _ in hparams][:2] == ["learning_rate", "num_layers"]


@pytest.mark.slow
def test_after_the_search_the_most_important_knobs_are_first_and_ticked(searched):
    result, first, final = searched
    run = RunDir(result.run_dir)
    records = read_trial_records(run.tuner_dir)
    names = load_results(run.path).hp_names
    importance = hyperparameter_importance(records, names, direction="max")
    assert importance, importance.message  # 7 completed configurations
    expected = leading_knobs(names, SHOWN - 1, importance=importance, records=records)
    hparams = _hparams(final["experiment"])
    _assert_ticked_first(hparams, expected)
    # Knobs only some trials have (a second layer's units) are never ticked: parallel
    # coordinates would leave those trials out.
    assert all(all(name in r.hyperparameters for r in records) for name in expected)
    # The importance order, not the recipe's, when they differ.
    if expected != leading_knobs(names, SHOWN - 1, records=records):
        assert _hparams(first["experiment"]) != hparams
    assert tb_read.experiment(run.tensorboard_dir).hparam_infos[0].name  # still readable


@pytest.mark.slow
def test_metrics_start_with_the_score_then_the_validation_curves(searched):
    _, first, final = searched
    for state in (first, final):
        metrics = _metrics(state["experiment"])
        assert metrics[:SHOWN] == [("", "trial/score"), ("validation", "epoch_accuracy"),
                                   ("validation", "epoch_loss"), ("train", "epoch_accuracy"),
                                   ("train", "epoch_loss")]
        assert metrics[SHOWN:] == LATER_METRICS
    infos = final["experiment"]["metricInfos"]
    assert infos[0]["displayName"] == "score (val_accuracy)"
    assert infos[-1]["displayName"].startswith("outcome code (0 completed, 1 pruned, 2 diverged")


@pytest.mark.slow
def test_every_trial_has_its_outcome_and_diverged_ones_no_score(searched):
    result, _, final = searched
    groups = {group["name"]: group for group in final["groups"]}
    records = {r.trial_id: r for r in result.trials}
    assert set(groups) == set(records)
    outcomes = {r.outcome for r in records.values()}
    assert {"completed", "pruned", "diverged"} <= outcomes, outcomes
    statuses = {"completed": "STATUS_SUCCESS", "pruned": "STATUS_SUCCESS",
                "diverged": "STATUS_FAILURE"}
    for trial_id, group in groups.items():
        record = records[trial_id]
        values = {(m["name"].get("group", ""), m["name"]["tag"]): m["value"]
                  for m in group["metricValues"]}
        assert group["hparams"]["outcome"] == record.outcome
        assert [s["status"] for s in group["sessions"]] == [statuses[record.outcome]]
        assert values[("", "trial/outcome_code")] == OUTCOMES.index(record.outcome)
        curves = {key: value for key, value in values.items() if key[1].startswith("epoch_")}
        assert len(curves) == 4
        if record.outcome == "diverged":
            # No score, and the last value of every epoch metric (what the columns show) NaN.
            assert ("", "trial/score") not in values
            assert all(value == "NaN" for value in curves.values()), curves
        else:
            assert values[("", "trial/score")] == pytest.approx(record.score)
            assert all(isinstance(value, float) and math.isfinite(value)
                       for value in curves.values()), curves


@pytest.mark.slow
def test_the_search_panels_are_in_the_search_run(searched):
    result, _, final = searched
    assert SEARCH_RUN in final["runs"] and f"regexInput={SEARCH_RUN}&" in SEARCH_RUN_URL
    assert {"search/leaderboard", "search/best_configuration",
            "search/importance"} <= set(final["text"][SEARCH_RUN])
    assert {"search/importance_chart", "search/contour"} <= set(final["images"][SEARCH_RUN])
    assert "." not in final["text"] and "." not in final["images"]
    # The root holds the HParams experiment only.
    assert set(tb_read.texts(result.run_dir / "tensorboard")) == set()
    board = tb_read.texts(RunDir(result.run_dir).search_logdir)["search/leaderboard"][-1][1]
    lines = board.splitlines()
    assert lines[0].startswith(f"**{len(result.trials)} trials** (")
    assert lines[2].split(" | ")[:5] == ["| rank", "trial", "outcome", "score", "epochs"]
    assert len(lines[2].strip("| ").split(" | ")) == 10  # five knobs
    # One card: the table as rendered (each column as wide as its widest cell, plus padding)
    # is about 100 characters wide, and so is the text around it.
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in lines if line.startswith("| ")]
    assert sum(max(len(row[i]) for row in rows) + 3 for i in range(10)) <= 110
    assert max(len(line) for line in lines if not line.startswith("|")) <= 100
    assert lines[-1] == f"`python -m kerastune_kit inspect {shlex.quote(str(result.run_dir))}`"
    diverged = [line for line in lines if "| diverged |" in line]
    assert diverged and all(line.startswith("| - |") for line in diverged)
    assert all(line.split(" | ")[3] == "" for line in diverged)  # no score


def test_compact_leaderboard_orders_knobs_by_importance_then_recipe():
    records = [TrialRecord("0001", "COMPLETED", score=0.91, best_epoch=3, initial_epoch=3,
                           epochs=9, hyperparameters={"activation": "relu", "batch_size": 64,
                                                      "learning_rate": 0.01, "units_0": 32,
                                                      "optimizer": "adam", "dropout_0": 0.1,
                                                      "normalization": "none"}),
               TrialRecord("0002", "DIVERGED", epochs=1, message="diverged: non-finite loss",
                           hyperparameters={"learning_rate": 9.0, "optimizer": "sgd"})]
    names = list(records[0].hyperparameters)
    board = markdown_leaderboard(records, names, objective="val_accuracy")
    header, first, second = board.splitlines()[2], board.splitlines()[4], board.splitlines()[5]
    assert header == ("| rank | trial | outcome | score | epochs | learning_rate | optimizer "
                      "| units_0 | dropout_0 | batch_size |")
    assert first == "| 1 | 0001 | completed | 0.9100 | 4-9 | 0.01 | adam | 32 | 0.1 | 64 |"
    assert second == "| - | 0002 | diverged |  | 1 | 9 | sgd |  |  |  |"
    assert "by the recipe's priority" in board
    ranked = markdown_leaderboard(records, names, importance={"activation": 0.6,
                                                              "batch_size": 0.3})
    assert ranked.splitlines()[2].endswith("| activation | batch_size | learning_rate "
                                           "| optimizer | units_0 |")
    assert "by importance" in ranked


def test_leaderboard_footer_names_the_run_quoted_for_a_shell(tmp_path):
    from kerastune_kit.tensorboard import SearchSummaryWriter

    records = [TrialRecord("0000", "COMPLETED", score=0.9, best_epoch=0, epochs=1,
                           hyperparameters={"learning_rate": 0.01})]
    run = tmp_path / "my run"
    assert markdown_leaderboard(records, ["learning_rate"]).splitlines()[-1] == \
        "`python -m kerastune_kit inspect RUN`"
    summary = SearchSummaryWriter(RunDir(run).tensorboard_dir)
    summary.write_leaderboard(records, ["learning_rate"], objective="val_accuracy", step=1)
    summary.close()
    board = tb_read.texts(RunDir(run).search_logdir)["search/leaderboard"][-1][1]
    assert board.splitlines()[-1] == f"`python -m kerastune_kit inspect '{run}'`"
    # A refine stage's writer (RUN/stages/2/tensorboard) names the whole run.
    stage = RunDir(run).stage_dir(2)
    stage.mkdir(parents=True)
    (stage / "run.json").write_text('{"stage": 2}')
    assert SearchSummaryWriter(RunDir(stage).tensorboard_dir).run_dir == run


def test_knob_order_and_the_ticked_knobs():
    names = ["units_1", "activation", "use_l2", "l2", "units_0", "num_layers", "optimizer",
             "learning_rate", "batch_size", "dropout_0"]
    assert knob_order(names) == ["learning_rate", "optimizer", "num_layers", "units_0",
                                 "units_1", "dropout_0", "batch_size", "use_l2", "l2",
                                 "activation"]
    assert leading_knobs(names, 4) == ["learning_rate", "optimizer", "num_layers", "units_0"]
    importance = {"units_1": 0.5, "l2": 0.2, "activation": 0.2, "batch_size": 0.1}
    # A knob some trials lack (units_1, l2) is ticked only when too few others are left.
    assert leading_knobs(names, 3, importance=importance) == ["activation", "batch_size",
                                                              "learning_rate"]
    records = [TrialRecord("1", "COMPLETED", hyperparameters={n: 1 for n in names}),
               TrialRecord("2", "COMPLETED", hyperparameters={n: 1 for n in names
                                                              if n != "activation"})]
    assert leading_knobs(names, 3, importance=importance, records=records) == [
        "units_1", "l2", "batch_size"]


def test_show_first_rewrites_the_experiment_in_place(tmp_path):
    from kerastune_kit.space import Choices, FloatRange
    from kerastune_kit.tensorboard import show_first, shown_hparams, write_experiment_config

    domains = {"activation": Choices(("relu", "gelu")), "learning_rate": FloatRange(1e-4, 1e-1),
               "optimizer": Choices(("adam", "sgd")), "batch_size": Choices((32, 64)),
               "units_0": Choices((16, 32)), "dropout_0": FloatRange(0.0, 0.5)}
    write_experiment_config(tmp_path, domains, ["loss", "accuracy"], objective="val_accuracy")
    (path,) = tmp_path.glob("events.out.tfevents.*")
    assert shown_hparams(tmp_path) == ["dropout_0", "learning_rate", "optimizer", "outcome",
                                       "units_0"]  # the recipe's first four
    assert show_first(tmp_path, ["activation", "dropout_0", "learning_rate", "units_0"])
    assert list(tmp_path.iterdir()) == [path]  # the same file, no temporary left
    assert shown_hparams(tmp_path) == ["activation", "dropout_0", "learning_rate", "outcome",
                                       "units_0"]
    assert not show_first(tmp_path, ["activation", "dropout_0", "learning_rate", "units_0"])
    experiment = tb_read.experiment(tmp_path)
    assert {h.name for h in experiment.hparam_infos} == {*domains, "outcome"}
    assert [m.name.tag for m in experiment.metric_infos][:3] == [
        "trial/score", "epoch_accuracy", "epoch_loss"]
    assert not show_first(tmp_path / "elsewhere", ["activation"])  # no config: nothing to do
