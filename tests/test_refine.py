"""Coarse to fine (``--refine``): the narrowing on hand-made records, and real staged searches."""

from __future__ import annotations

import json
import logging
import math
import sys
import time

import pytest

from kerastune_kit import refine
from kerastune_kit.config import SearchConfig, load_toml
from kerastune_kit.refine import (
    StagePlan,
    narrow_space,
    plan_stage,
    stage_epochs,
    top_configurations,
)
from kerastune_kit.results import TrialRecord
from kerastune_kit.rundir import RunDir, split_stage_trial_id, stage_trial_id
from kerastune_kit.space import Choices, Fixed, FloatRange, IntRange, SearchSpace

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BASE = {"num_layers": 2, "units_0": 64, "units_1": 32, "dropout_0": 0.1, "dropout_1": 0.2,
        "normalization": "none", "residual": False, "learning_rate": 1e-3,
        "optimizer": "adam", "use_clipnorm": False, "activation": "relu",
        "kernel_initializer": "auto", "use_l2": False, "batch_size": 64}


def _record(trial_id: str, score: float | None, status: str = "COMPLETED",
            **values) -> TrialRecord:
    return TrialRecord(trial_id=trial_id, status=status, score=score, best_epoch=1,
                       hyperparameters={**BASE, **values})


def _filler(n: int, start: int = 10) -> list[TrialRecord]:
    """``n`` poorer trials with other values (so the top 20 % is the hand-made best ones)."""
    return [_record(f"{start + i:02d}", 0.3 + 0.01 * i, learning_rate=0.05 + 0.001 * i,
                    optimizer="sgd",
                    activation="tanh", num_layers=1, units_0=400, batch_size=256)
            for i in range(n)]


def _round_trip(overrides: dict) -> dict:
    """The overrides as a stage's config.toml writes and reads them."""
    text = SearchConfig(data="iris", overrides=overrides).to_toml()
    return tomllib.loads(text)["space"]


def test_log_span_padded_and_rounded_outwards():
    space = SearchSpace()
    records = [_record("00", 0.95, learning_rate=1e-4), _record("01", 0.94, learning_rate=3e-2),
               *_filler(8)]
    narrowing = narrow_space(records, space, space, direction="max")
    assert narrowing.top_trials == ("00", "01") and narrowing.ranked == 10
    spec = narrowing.overrides["learning_rate"]
    # the span in log space, padded by 10 % of it on each side (ln 300 * 0.1 = 0.570)
    pad = 0.1 * math.log(3e-2 / 1e-4)
    low, high = 1e-4 * math.exp(-pad), 3e-2 * math.exp(pad)
    assert spec["log"] is True
    assert spec["min"] <= low and spec["min"] == pytest.approx(low, rel=2e-3)
    assert spec["max"] >= high and spec["max"] == pytest.approx(high, rel=2e-3)
    assert (spec["min"], spec["max"]) == (5.65e-05, 0.0531)  # 3 significant digits, outwards
    # symmetric on the log scale, not the linear one
    assert math.log(1e-4 / low) == pytest.approx(math.log(high / 3e-2))
    assert narrowing.changes["learning_rate"] == "5.65e-5..5.31e-2 (log)"
    assert _round_trip(narrowing.overrides)["learning_rate"] == spec
    domain = SearchSpace(narrowing.overrides).domain("learning_rate")
    assert domain == FloatRange(5.65e-05, 0.0531, log=True)


def test_narrow_span_is_at_least_a_tenth_of_the_range_and_clipped_to_the_original():
    space = SearchSpace()
    records = [_record("00", 0.9, learning_rate=0.09), _record("01", 0.9, learning_rate=0.1),
               *_filler(8)]
    spec = narrow_space(records, space, space, direction="max").overrides["learning_rate"]
    assert spec["max"] == 0.1  # the original maximum
    # 5 % of the original log range (ln 1e4) below the lowest top value
    assert spec["min"] == pytest.approx(0.09 * math.exp(-0.05 * math.log(1e4)), rel=2e-3)


def test_int_ranges_stay_integers_and_a_collapsed_range_is_fixed():
    space = SearchSpace()
    records = [_record("00", 0.95, units_0=64, units_1=100),
               _record("01", 0.94, units_0=100, units_1=100), *_filler(8)]
    narrowing = narrow_space(records, space, space, direction="max")
    over = narrowing.overrides
    assert over["num_layers"] == 2 and narrowing.changes["num_layers"] == "fixed 2"
    units = over["units_0"]
    assert isinstance(units["min"], int) and isinstance(units["max"], int)
    assert units["log"] is True and units["min"] <= 64 and units["max"] >= 100
    pad = max(0.1 * math.log(100 / 64), 0.05 * math.log(512 / 16))
    assert units == {"min": round(64 * math.exp(-pad)), "max": round(100 * math.exp(pad)),
                     "log": True}
    # units_1: both 100 -> a range of at least a tenth of 32..512 (log) around it
    assert over["units_1"]["min"] < 100 < over["units_1"]["max"]
    new = SearchSpace(_round_trip(over))
    assert new.domain("num_layers") == Fixed(2)
    assert new.max_layers() == 2 and "units_2" not in new.hparam_domains()
    assert new.domain("units_0") == IntRange(units["min"], units["max"], log=True)
    # a linear int range whose top values all agree collapses to a fixed value
    cnn = SearchSpace(family="cnn")
    base = {"num_blocks": 2, "filters_0": 32, "filters_1": 64, "dropout_0": 0.0,
            "dropout_1": 0.0, "convs_per_block": 2, "kernel_size": 3, "pooling": "max",
            "head": "flatten", "dense_layers": 0, "normalization": "none",
            "learning_rate": 1e-3, "optimizer": "adam", "use_clipnorm": False,
            "activation": "relu", "kernel_initializer": "auto", "use_l2": False,
            "batch_size": 64, "residual": False}
    cnn_records = [TrialRecord(str(i), "COMPLETED", score=0.9 - i / 100,
                               hyperparameters={**base, "filters_0": 16 + i})
                   for i in range(2)]
    # (a third, worse trial tried other values: the stage did vary these knobs)
    cnn_records.append(TrialRecord("2", "COMPLETED", score=0.5, hyperparameters={
        **base, "filters_0": 20, "convs_per_block": 1, "dense_layers": 1, "dense_units": 64,
        "head_dropout": 0.1}))
    cnn_over = narrow_space(cnn_records, cnn, cnn, direction="max").overrides
    assert cnn_over["convs_per_block"] == 2 and cnn_over["dense_layers"] == 0
    assert "dense_units" not in cnn_over and "head_dropout" not in cnn_over
    SearchSpace(cnn_over, family="cnn")  # a valid space


def test_agreement_fixes_categoricals_and_disagreement_keeps_choices():
    space = SearchSpace(activation=["relu", "gelu", "tanh"])
    records = [_record("00", 0.95, activation="relu", residual=True, batch_size=128),
               _record("01", 0.94, activation="gelu", residual=True, batch_size=128),
               *_filler(8)]
    narrowing = narrow_space(records, space, space, direction="max")
    over = narrowing.overrides
    assert over["optimizer"] == "adam" and narrowing.changes["optimizer"] == "fixed adam"
    assert over["residual"] is True and narrowing.changes["residual"] == "fixed true"
    assert over["batch_size"] == 128
    assert over["activation"] == ["relu", "gelu", "tanh"]  # the user's choices, kept
    assert "activation" not in narrowing.changes
    new = SearchSpace(_round_trip(over))
    assert new.domain("optimizer") == Fixed("adam")
    assert new.domain("activation") == Choices(("relu", "gelu", "tanh"))
    assert new.domain("residual") == Fixed(True)


def test_optional_knobs_off_when_every_top_trial_had_them_off():
    space = SearchSpace()
    records = [_record("00", 0.95, use_l2=True, l2=1e-4),
               _record("01", 0.94, use_l2=True, l2=1e-3),
               _record("02", 0.93, use_clipnorm=True, clipnorm=1.0), *_filler(7)]
    narrowing = narrow_space(records, space, space, direction="max")
    over = narrowing.overrides
    assert over["clipnorm"] == "off"  # both top trials (00, 01) ran without it
    assert over["l2"]["log"] and over["l2"]["min"] <= 1e-4 <= 1e-3 <= over["l2"]["max"]
    new = SearchSpace(_round_trip(over))
    assert new.enabled("clipnorm") is False and new.enabled("l2") is True
    assert "use_clipnorm" not in new.hparam_domains() and "use_l2" not in new.hparam_domains()
    # top trials that disagree on the switch keep both the switch and the range
    mixed = [_record("00", 0.95, use_l2=True, l2=1e-4), _record("01", 0.94), *_filler(8)]
    over = narrow_space(mixed, space, space, direction="max").overrides
    assert "l2" not in over
    assert SearchSpace(over).enabled("l2") is None


def test_per_layer_knobs_narrowed_only_from_trials_that_have_the_layer():
    space = SearchSpace()
    records = [_record("00", 0.95, num_layers=3, units_2=200, dropout_2=0.3),
               _record("01", 0.94, num_layers=2), *_filler(8)]
    narrowing = narrow_space(records, space, space, direction="max")
    over = narrowing.overrides
    assert over["num_layers"] == {"min": 2, "max": 3, "log": False}
    assert "units_2" not in over and "dropout_2" not in over  # one top trial has layer 2
    assert "units_0" in over  # both have layer 0
    new = SearchSpace(_round_trip(over))
    assert new.domain("units_2") == space.domain("units_2")
    assert "units_3" not in new.hparam_domains()


def test_too_few_ranked_trials_leave_the_space_unchanged_with_a_note():
    space = SearchSpace(optimizer=["adam", "sgd"])
    records = [_record("00", 0.9), _record("01", None, status="FAILED", learning_rate=0.5),
               _record("02", None, status="DIVERGED"), _record("03", None, status="RUNNING")]
    narrowing = narrow_space(records, space, space, direction="max")
    assert narrowing.overrides == {"optimizer": ["adam", "sgd"]}
    assert narrowing.changes == {} and narrowing.ranked == 1
    assert "fewer than 2" in narrowing.notes[0]
    plan = plan_stage(2, 3, records, space, space, direction="max", max_epochs=9, factor=2.0)
    assert plan.max_epochs == 18
    assert plan.line() == ("stage 2/3: space unchanged (1 ranked configuration, fewer than 2), "
                           "18 epochs")


def test_top_configurations_are_distinct_and_at_least_two():
    promoted = [_record("00", 0.90), _record("01", 0.95)]  # a Hyperband promotion: same values
    records = [*promoted, _record("02", 0.93, learning_rate=0.01), *_filler(12)]
    top, ranked = top_configurations(records, "max")
    assert ranked == 14
    assert [r.trial_id for r in top] == ["01", "02", "21"]  # ceil(20 % of 14) = 3
    top, _ = top_configurations(records[:3], "min")
    assert [r.trial_id for r in top] == ["00", "02"]


def test_stage_line_fits_100_columns_and_epochs_scale():
    assert stage_epochs(9, 2.0) == 18 and stage_epochs(3, 1.5) == 5 and stage_epochs(1, 1) == 1
    changes = {f"units_{i}": "64..256 (log)" for i in range(4)}
    changes.update(learning_rate="3e-4..2e-3 (log)", optimizer="fixed adam",
                   activation="fixed relu", clipnorm="off", normalization="fixed batch")
    plan = StagePlan(stage=2, stages=3, max_epochs=18, overrides={}, changes=changes)
    line = plan.line()
    assert len(line) <= 100
    assert line.startswith("stage 2/3: learning_rate 3e-4..2e-3 (log), optimizer fixed adam")
    assert line.endswith(", 18 epochs") and "more" in line
    short = StagePlan(stage=2, stages=3, max_epochs=18, overrides={},
                      changes={"learning_rate": "3e-4..2e-3 (log)", "optimizer": "fixed adam"})
    assert short.line() == "stage 2/3: learning_rate 3e-4..2e-3 (log), optimizer fixed adam, " \
                           "18 epochs"
    assert StagePlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_time_shares_and_stage_ids():
    deadline = time.time() + 90
    assert refine._share(deadline, 3) == pytest.approx(time.time() + 30, abs=1)
    assert refine._share(None, 3) is None
    assert refine._ended("finished", None)
    assert refine._ended("time budget", time.time() + 60)  # its share ran out, not the search
    assert not refine._ended("time budget", time.time())
    assert not refine._ended("interrupted by SIGINT", None)
    assert stage_trial_id(2, "03") == "stage-2/03" and stage_trial_id(1, "03") == "03"
    assert split_stage_trial_id("stage-2/03") == (2, "03")
    assert split_stage_trial_id("03") == (None, "03")
    run = RunDir("runs/x")
    assert run.trial_dir("stage-2/03") == run.path / "stages/2/tuner/trial_03"
    assert run.trial_logdir("stage-2/03") == run.path / "tensorboard/stage-2/03"


# ---------------------------------------------------------------------- real searches
def _config(tmp_path, **kwargs) -> SearchConfig:
    values = dict(data="iris", tuner="random", max_trials=4, max_epochs=2, refine=1,
                  run_dir=str(tmp_path / "run"), seed=1, patience=0, min_steps_per_epoch=5,
                  trials_per_worker=0)
    values.update(kwargs)
    return SearchConfig(**values)


@pytest.mark.slow
def test_refine_search_writes_a_narrowed_stage_and_results_over_both(tmp_path):
    pytest.importorskip("keras_tuner")
    from kerastune_kit.runs import load_results
    from kerastune_kit.tuning import run_search
    from tests.tb_read import _accumulator, experiment_hparam_names, session_hparams, texts

    lines: list[str] = []
    seen: list[str] = []
    result = run_search(_config(tmp_path), on_start=lines.append,
                        on_trial=lambda r: seen.append(r.trial_id))
    run = RunDir(result.run_dir)
    stage_lines = [line for line in lines if line.startswith("stage ")]
    assert [line[:10] for line in stage_lines] == ["stage 1/2:", "stage 2/2:"]
    assert all(len(line) <= 100 for line in stage_lines)
    assert stage_lines[1].endswith(", 4 epochs")

    # stage 2: its own run directory, its narrowed space in its config.toml
    stage_dir = run.stage_dir(2)
    saved = load_toml(stage_dir / "config.toml")
    assert saved["max_epochs"] == 4 and saved["refine"] == 0 and saved["baselines"] is False
    stages = refine.read_stages(run)
    assert [s["stage"] for s in stages] == [1, 2]
    assert [s["status"] for s in stages] == ["finished", "finished"]
    assert saved["overrides"] == stages[1]["overrides"] and stages[1]["changes"]
    narrowed = SearchSpace(saved["overrides"]).hparam_domains()
    wide = SearchSpace().hparam_domains()
    assert any(narrowed.get(name) != domain for name, domain in wide.items())
    assert all(name in wide for name in narrowed)
    assert stage_lines[1].startswith("stage 2/2: " + next(iter(sorted(
        stages[1]["changes"], key=refine._order))))

    # every trial of stage 2 trained max_epochs x refine_factor epochs
    stage2 = [r for r in result.trials if r.trial_id.startswith("stage-2/")]
    stage1 = [r for r in result.trials if not r.trial_id.startswith("stage-")]
    assert len(stage1) == 4 and len(stage2) == 4 and len(seen) == 8
    assert {r.epochs for r in stage2 if r.status == "COMPLETED"} == {4}
    assert {r.epochs for r in stage1 if r.status == "COMPLETED"} == {2}
    assert sorted(seen) == sorted(r.trial_id for r in result.trials)
    for record in stage2:  # inside the narrowed space
        for name, value in record.hyperparameters.items():
            domain = narrowed[name]
            if isinstance(domain, (IntRange, FloatRange)):
                assert domain.min <= value <= domain.max, name
            elif isinstance(domain, Fixed):
                assert value == domain.value, name

    # the run's results are over both stages, and say where the best came from
    loaded = load_results(run.path)
    assert len(loaded) == 8
    assert loaded.best.trial_id == result.best.trial_id
    assert {r.trial_id for r in loaded} == {r.trial_id for r in result.trials}
    assert all(r.curve for r in loaded if r.trial_id.startswith("stage-2/"))  # full records
    best_scores = [r.score for r in result.trials if r.score is not None]
    assert result.best.score == max(best_scores)
    best = run.read_best_hyperparameters()
    stage, _ = split_stage_trial_id(result.best.trial_id)
    assert best["trial_id"] == result.best.trial_id and best["stage"] == (stage or 1)
    assert best["hyperparameters"] == result.best.hyperparameters
    source = run.stage_dir(stage) / "best_model.keras" if stage else run.best_model
    assert run.best_model.read_bytes() == source.read_bytes()
    leaderboard = (run.path / "leaderboard.csv").read_text().splitlines()
    assert len(leaderboard) == 9 and leaderboard[1].split(",")[0] == result.best.trial_id

    # TensorBoard at RUN/tensorboard shows both stages: sessions, scalars, each stage's space
    logdir = run.tensorboard_dir
    assert (stage_dir / "tensorboard").resolve() == (logdir / "stage-2").resolve()
    assert {"learning_rate", "units_0"} <= experiment_hparam_names(logdir)
    with pytest.raises(KeyError):  # one HParams experiment: the run's
        experiment_hparam_names(logdir / "stage-2")
    from tensorboard.plugins.hparams import metadata

    for record in stage2:
        local = split_stage_trial_id(record.trial_id)[1]
        session = logdir / "stage-2" / local
        assert session_hparams(session)["learning_rate"] == pytest.approx(
            record.hyperparameters["learning_rate"])
        content = _accumulator(session).PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG])
        assert start.group_name == record.trial_id  # not merged with stage 1's trial
    assert [step for step, _ in texts(logdir / "search")[refine.SPACE_TAG]] == [1]
    (step, text), = texts(logdir / "stage-2")[refine.SPACE_TAG]
    assert step == 2 and "stage 2 of 2" in text and "(narrowed)" in text
    board = texts(logdir / "search")["search/leaderboard"]
    assert "**8 trials**" in board[-1][1]


@pytest.mark.slow
def test_resume_after_stage_1_continues_stage_2_only(tmp_path):
    pytest.importorskip("keras_tuner")
    from kerastune_kit.tuning import run_search

    class Killed(Exception):
        pass

    def kill_at_stage_2(line: str) -> None:
        if line.startswith("stage 2/"):
            raise Killed(line)

    with pytest.raises(Killed):
        run_search(_config(tmp_path), on_start=kill_at_stage_2)
    run = RunDir(tmp_path / "run")
    assert [s["status"] for s in refine.read_stages(run)] == ["finished", "running"]
    stage1 = {str(p): p.stat().st_mtime_ns for p in run.trial_records()}
    assert len(stage1) == 4

    stored = refine.read_stages(run)[1]
    assert stored["changes"] and stored["max_epochs"] == 4

    class Warnings(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    warnings = Warnings()
    refine.logger.addHandler(warnings)
    seen: list[str] = []
    try:
        result = run_search(_config(tmp_path, resume=True),
                            on_trial=lambda r: seen.append(r.trial_id))
    finally:
        refine.logger.removeHandler(warnings)
    assert not [m for m in warnings.messages if "derived again" in m]  # the same space
    assert refine.read_stages(run)[1]["overrides"] == stored["overrides"]
    assert load_toml(run.stage_dir(2) / "config.toml")["overrides"] == stored["overrides"]
    assert len(seen) == 4 and all(t.startswith("stage-2/") for t in seen)
    assert {str(p): p.stat().st_mtime_ns for p in run.trial_records()} == stage1
    assert [s["status"] for s in refine.read_stages(run)] == ["finished", "finished"]
    assert len(result.trials) == 8
    assert load_toml(run.stage_dir(2) / "config.toml")["max_epochs"] == 4

    # a finished search resumed runs nothing
    again: list[str] = []
    result = run_search(_config(tmp_path, resume=True), on_trial=lambda r: again.append(1))
    assert again == [] and len(result.trials) == 8


def test_a_knob_the_stage_never_varied_keeps_its_domain():
    """A grid that only walked batch_size, or a short random search that never moved a knob,
    says nothing about that knob: it is neither fixed nor narrowed."""
    space = SearchSpace({"optimizer": ["adam", "sgd"], "units": [32, 64], "num_layers": 1})
    base = {"num_layers": 1, "units_0": 32, "dropout_0": 0.0, "normalization": "none",
            "residual": False, "learning_rate": 1e-3, "optimizer": "adam",
            "use_clipnorm": False, "activation": "relu", "kernel_initializer": "auto",
            "use_l2": False}
    records = [TrialRecord(str(i), "COMPLETED", score=0.9 - i / 100,
                           hyperparameters={**base, "batch_size": size})
               for i, size in enumerate((32, 64, 128, 256))]
    narrowing = narrow_space(records, space, space, direction="max")
    assert narrowing.overrides["optimizer"] == ["adam", "sgd"]
    assert narrowing.overrides["units"] == [32, 64]
    # the top two disagree on batch_size, the only knob that moved: nothing changes
    assert narrowing.changes == {}
    assert any("not varied" in note and "optimizer" in note for note in narrowing.notes)


@pytest.mark.slow
def test_each_stage_seeds_its_oracle_and_trials_apart(tmp_path):
    """Stage k's oracle draws afresh (seed + 1000 (k - 1)); the data split stays stage 1's."""
    from kerastune_kit.session import prepare
    from kerastune_kit.tuners import STAGE_SEED_STRIDE, build_tuner

    seeds = []
    for run_dir in (tmp_path / "run", tmp_path / "run" / "stages" / "2"):
        config = SearchConfig(data="iris", tuner="random", max_trials=2, max_epochs=1, seed=5,
                              run_dir=str(run_dir), preflight=False)
        dataset, _, hypermodel, objective = prepare(config, check_run_dir=False)
        tuner = build_tuner(config, hypermodel, objective=objective)
        seeds.append((tuner.oracle.seed, tuner.kit_seed, dataset.fingerprint()))
    assert seeds[0][:2] == (6, 5)
    assert seeds[1][:2] == (6 + STAGE_SEED_STRIDE, 5 + STAGE_SEED_STRIDE)
    assert seeds[0][2] == seeds[1][2]
