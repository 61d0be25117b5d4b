"""Tables built once: DataFrames first (hall of fame, Pareto front, compare report,
reference scores, documentation tables), rendered by evo_nos.core.tables."""
import io
import json
import math

import pandas as pd
import pytest

from evo_nos.core.algebra import readable_latex
from evo_nos.core.rules import Rule
from evo_nos.core.tables import markdown, records, write_table
from evo_nos.experiments.compare import compare
from evo_nos.experiments.curves import SearchCurve
from evo_nos.experiments.rendering import SHOWN
from evo_nos.experiments.report import summarise
from evo_nos.experiments.references import ReferenceScore, ReferenceSet
from evo_nos.fitness.evaluation import Evaluation
from evo_nos.fitness.standin import StandInBackend
from evo_nos.operators.space import SearchSpace
from evo_nos.optim.export import (known_rules_frame, known_rules_markdown, primitives_frame,
                                  primitives_markdown)
from evo_nos.search import HallOfFame, Search
from evo_nos.strategies import make_strategy
from evo_nos.tracking import Tracker, list_artifacts, load_artifact_text, load_hall_of_fame, \
    load_table

from mlflow_store import fresh_store

POWERSIGN = "mul(exp(mul(sign_g, sign_m)), g)"
HOF_COLUMNS = ["rank", "rule", "name", "math", "latex", "simplified", "readable",
               "readable_latex", "fitness", "fitness_se", "seeds", "best_lr", "complexity",
               "simplified_complexity", "variants", "status"]


def ev(rule, fitness, best_lr=0.1, status="ok"):
    return Evaluation(rule=rule, fitness=fitness, status=status, best_lr=best_lr,
                      lr_scores={} if best_lr is None else {best_lr: fitness})


def small_hall_of_fame() -> HallOfFame:
    hof = HallOfFame(size=3)
    for e in [ev("g", 0.5), ev(POWERSIGN, 0.9), ev("mul(g, m)", 0.7, best_lr=None),
              ev("adam", 0.6, 0.01, "cached"), ev("sign_g", 0.1)]:
        hof.update(e)
    return hof


# -- the renderer ------------------------------------------------------------------------------
def test_markdown_escapes_pipes_also_in_code_cells_and_leaves_missing_cells_empty():
    frame = pd.DataFrame({"rule": ["a|b", "c"], "note": ["x | y", None],
                          "value": [0.5, math.nan], "n": [3, 4]})
    text = markdown(frame, formats={"value": ".2f"}, code=("rule",),
                    headers={"note": "the note"})
    assert text == ("| rule | the note | value | n |\n|---|---|---|---|\n"
                    "| `a\\|b` | x \\| y | 0.50 | 3 |\n"
                    "| `c` |  |  | 4 |\n")


def test_markdown_formats_by_spec_or_function_and_floats_with_g():
    frame = pd.DataFrame({"rate": [0.125], "lr": [1e-4], "id": ["abcdef123456"]})
    assert markdown(frame, formats={"rate": ".1%", "id": lambda v: v[:4]}).splitlines()[2] \
        == "| 12.5% | 0.0001 | abcd |"
    assert markdown(pd.DataFrame(columns=["a", "b"])) == "| a | b |\n|---|---|\n"


def test_write_table_round_trip_csv_and_json_read_back_equal_the_frame(tmp_path):
    frame = pd.DataFrame({"rule": ["a|b", "g"], "fitness": [0.1234567890123, 0.5],
                          "best_lr": [math.nan, 0.01], "complexity": [3, 1]})
    paths = write_table(frame, tmp_path / "table", formats={"fitness": ".4f"}, code=("rule",),
                        title="## A table")
    assert {k: p.name for k, p in paths.items()} == {
        "markdown": "table.md", "csv": "table.csv", "json": "table.json"}
    assert paths["markdown"].read_text() == "## A table\n\n" + markdown(
        frame, formats={"fitness": ".4f"}, code=("rule",))
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), frame)
    text = paths["json"].read_text()
    pd.testing.assert_frame_equal(
        pd.read_json(io.StringIO(text), orient="records", precise_float=True), frame)
    assert json.loads(text) == records(frame) == [
        {"rule": "a|b", "fitness": 0.1234567890123, "best_lr": None, "complexity": 3},
        {"rule": "g", "fitness": 0.5, "best_lr": 0.01, "complexity": 1}]


def test_records_are_plain_python_values_with_none_for_missing():
    rows = records(pd.DataFrame({"n": [1, 2], "x": [math.nan, 0.5]}))
    assert rows == [{"n": 1, "x": None}, {"n": 2, "x": 0.5}]
    assert [type(v) for v in rows[1].values()] == [int, float]


# -- the hall of fame --------------------------------------------------------------------------
def test_hall_of_fame_frame_has_the_table_columns_and_values_best_first():
    hof = small_hall_of_fame()
    frame = hof.frame
    assert list(frame.columns) == HOF_COLUMNS
    powersign, mul, adam = (Rule.parse(r) for r in (POWERSIGN, "mul(g, m)", "adam"))
    assert records(frame) == [
        {"rank": 1, "rule": POWERSIGN, "name": "powersign", "math": powersign.math,
         "latex": powersign.latex, "simplified": POWERSIGN,
         "readable": "g·exp(sign(g)·sign(m̂))", "readable_latex": readable_latex(powersign),
         "fitness": 0.9, "fitness_se": None, "seeds": 1, "best_lr": 0.1, "complexity": 6,
         "simplified_complexity": 6, "variants": 1, "status": "ok"},
        {"rank": 2, "rule": "mul(g, m)", "name": "", "math": mul.math, "latex": mul.latex,
         "simplified": "mul(g, m)", "readable": "g·m̂", "readable_latex": r"g \cdot \hat{m}",
         "fitness": 0.7, "fitness_se": None, "seeds": 1, "best_lr": None, "complexity": 3,
         "simplified_complexity": 3, "variants": 1, "status": "ok"},
        {"rank": 3, "rule": "adam", "name": "adam", "math": adam.math, "latex": adam.latex,
         "simplified": "adam", "readable": "m̂/(√v̂ + ε_adam)",
         "readable_latex": r"\frac{\hat{m}}{\sqrt{\hat{v}} + \epsilon_{\mathrm{adam}}}",
         "fitness": 0.6, "fitness_se": None, "seeds": 1, "best_lr": 0.01, "complexity": 1,
         "simplified_complexity": 1, "variants": 1, "status": "cached"}]
    pd.testing.assert_frame_equal(hof.to_frame(), frame)
    assert hof.rows() == records(frame)


def test_pareto_frame_is_the_front_without_rank():
    hof = small_hall_of_fame()
    front = hof.pareto_frame()
    assert list(front.columns) == HOF_COLUMNS[1:]
    assert list(zip(front["complexity"], front["rule"], front["fitness"])) == [
        (1, "adam", 0.6), (3, "mul(g, m)", 0.7), (6, POWERSIGN, 0.9)]
    assert hof.pareto_rows() == records(front)


def test_an_empty_hall_of_fame_has_empty_frames_with_the_columns():
    hof = HallOfFame(size=2)
    assert list(hof.frame.columns) == HOF_COLUMNS and hof.frame.empty
    assert list(hof.pareto_frame().columns) == HOF_COLUMNS[1:]
    assert hof.rows() == [] and hof.pareto_rows() == []
    assert hof.table_text() == "  #   fitness     ± SE  seeds       lr   cx  var  rule"


def test_hall_of_fame_markdown_and_terminal_table_render_the_frames():
    hof = small_hall_of_fame()
    frame, front = hof.frame, hof.pareto_frame()
    shown = {"formats": {"fitness": ".4f", "fitness_se": ".4f"}, "code": ("rule",),
             "headers": {"fitness": "fitness (mean)", "fitness_se": "± SE",
                         "simplified_complexity": "complexity"}}
    assert hof.markdown() == (
        "## Hall of fame (top 3)\n\n"
        + markdown(frame[["rank", "fitness", "fitness_se", "seeds", "rule", "readable",
                          "best_lr", "simplified_complexity", "variants", "name"]], **shown)
        + "\n## Pareto front (best rule per complexity)\n\n"
        + markdown(front[["simplified_complexity", "fitness", "fitness_se", "seeds", "rule",
                          "readable", "best_lr", "variants"]], **shown))
    lines = hof.markdown().splitlines()
    assert lines[2] == ("| rank | fitness (mean) | ± SE | seeds | rule | readable | best_lr "
                        "| complexity | variants | name |")
    assert lines[4] == (f"| 1 | 0.9000 |  | 1 | `{POWERSIGN}` | g·exp(sign(g)·sign(m̂)) "
                        "| 0.1 | 6 | 1 | powersign |")
    assert hof.table_text(width=20).splitlines() == [
        "  #   fitness     ± SE  seeds       lr   cx  var  rule",
        "  1    0.9000               1      0.1    6    1  mul(exp(mul(sign_g,…  (powersign)",
        "  2    0.7000               1             3    1  mul(g, m)",
        "  3    0.6000               1     0.01    1    1  adam  (adam)"]


def test_hall_of_fame_shows_the_standard_error_of_a_rule_scored_on_several_seeds():
    hof = HallOfFame(size=2)
    hof.update(ev("g", 0.5))
    hof.update(Evaluation(rule="g", fitness=0.55, status="ok", best_lr=0.1,
                          lr_scores={0.1: 0.55}, seeds=3, fitness_se=0.0123))
    assert [(r["fitness"], r["fitness_se"], r["seeds"]) for r in hof.rows()] == [
        (0.55, 0.0123, 3)]
    assert hof.markdown().splitlines()[4] == (
        "| 1 | 0.5500 | 0.0123 | 3 | `g` | g | 0.1 | 1 | 1 | sgd |")
    assert hof.table_text().splitlines()[1] == (
        "  1    0.5500   0.0123      3      0.1    1    1  g  (sgd)")


def test_a_search_logs_its_hall_of_fame_as_json_and_csv_from_the_frame(tmp_path):
    uri = fresh_store(tmp_path / "store")
    strategy = make_strategy("random", SearchSpace(), 0)
    result = Search(strategy, StandInBackend(POWERSIGN), budget=6, progress=False,
                    tracker=Tracker(experiment="tables", tracking_uri=uri),
                    hall_of_fame_size=4, config={"seed": 0, "preset": "standin:powersign"}).run()
    frame = result.hall_of_fame.frame
    assert not frame.empty
    assert {"hall_of_fame.json", "hall_of_fame.csv", "pareto_front.json",
            "evaluations.json"} <= set(list_artifacts(result.run_id, uri))
    csv = pd.read_csv(io.StringIO(load_artifact_text(result.run_id, "hall_of_fame.csv", uri)),
                      keep_default_na=False,
                      na_values={"best_lr": [""], "fitness_se": [""]})
    # one backend seed per rule: no standard error (None in the frame, an empty CSV cell,
    # read back as NaN: compared as the float column it is)
    assert frame["fitness_se"].isna().all() and (frame["seeds"] == 1).all()
    pd.testing.assert_frame_equal(csv, frame.astype({"fitness_se": float}), check_dtype=False)
    rows = load_hall_of_fame(result.run_id, uri)
    assert [list(r) for r in rows] == [HOF_COLUMNS] * len(rows)
    assert [r["rule"] for r in rows] == list(frame["rule"])
    assert [r["fitness"] for r in rows] == pytest.approx(list(frame["fitness"]), abs=1e-9)
    front = load_table(result.run_id, "pareto_front.json", uri)
    assert [r["rule"] for r in front] == list(result.hall_of_fame.pareto_frame()["rule"])
    history = load_table(result.run_id, "evaluations.json", uri)
    assert len(history) == len(result.history)
    assert list(history[0]) == ["index", "kind", "step", "compute", "elapsed", "rule",
                                "fitness", "fitness_se", "seeds", "best", "status", "best_lr",
                                "trainings", "steps", "seconds", "reason"]


# -- references -------------------------------------------------------------------------------
def test_reference_frame_markdown_and_terminal_table():
    refs = ReferenceSet("p", 0, "k", {
        "adam": ReferenceScore("adam", "adam", 0.4, "ok", 0.01, {0.01: 0.4}),
        "odd": ReferenceScore("odd", "a|b", 0.25, "diverged")})
    frame = refs.to_frame()
    assert list(frame.columns) == ["name", "rule", "fitness", "status", "best_lr", "lr_scores"]
    assert records(frame) == [s.row() for s in refs.scores.values()]
    assert refs.markdown() == ("| reference | fitness | best lr | status | rule |\n"
                               "|---|---|---|---|---|\n"
                               "| adam | 0.4000 | 0.01 | ok | `adam` |\n"
                               "| odd | 0.2500 |  | diverged | `a\\|b` |\n")
    assert refs.table_text() == ("reference       fitness  best lr  rule\n"
                                 "adam             0.4000     0.01  adam\n"
                                 "odd              0.2500           a|b  (diverged)")


# -- the compare report -------------------------------------------------------------------------
def curve(strategy, seed, best, hall_of_fame=()):
    return SearchCurve(run_id=f"{strategy}{seed}" + "0" * 30, name=f"{strategy} seed {seed}",
                       strategy=strategy, seed=seed, preset="p", budget=3, status="FINISHED",
                       settings={}, steps=[1, 2, 3], elapsed=[10.0, 20.0, 30.0], best=best,
                       trainings=3, evaluations=4, cached=1, invalid=0, seconds=30.0,
                       hall_of_fame=list(hall_of_fame))


def hand_report():
    nan = math.nan
    runs = [curve("evo", 0, [0.2, 0.5, 0.8], [{"rule": POWERSIGN, "fitness": 0.8},
                                               {"rule": "g", "fitness": 0.2}]),
            curve("evo", 1, [0.3, 0.3, 0.6], [{"rule": "g", "fitness": 0.6}]),
            curve("random", 0, [nan, nan, nan])]
    refs = [ReferenceSet("p", s, "k", {"adam": ReferenceScore("adam", "adam", a, "ok"),
                                       "sgd": ReferenceScore("sgd", "g", 0.1, "ok")})
            for s, a in ((0, 0.4), (1, 0.5))]
    return summarise(runs, refs)


def test_report_tables_are_frames_with_one_value_per_cell():
    frames = hand_report().tables()
    assert list(frames) == ["strategies", "improvement", "reach", "references", "top_rules",
                            "runs"]
    strategies = records(frames["strategies"])
    assert list(strategies[0]) == [
        "strategy", "runs", "best_mean", "ci_low", "ci_high", "ci_method", "best_std",
        "cache_hit_rate", "invalid_rate", "candidates_per_min", "trainings_mean", "top_rule"]
    evo, random = strategies
    assert evo["strategy"] == "evo" and evo["runs"] == 2
    assert evo["best_mean"] == pytest.approx(0.7) and evo["best_std"] == pytest.approx(
        math.sqrt(0.02))
    # two seeds (0.8, 0.6): percentile bootstrap, its ends the means of (0.6, 0.6), (0.8, 0.8)
    assert (evo["ci_low"], evo["ci_high"], evo["ci_method"]) == (
        pytest.approx(0.6), pytest.approx(0.8), "percentile")
    assert evo["cache_hit_rate"] == 0.25 and evo["candidates_per_min"] == pytest.approx(8.0)
    assert evo["invalid_rate"] == 0.0 and evo["trainings_mean"] == 3.0
    assert evo["top_rule"] == POWERSIGN
    assert random["best_mean"] is None and random["best_std"] is None
    assert (random["ci_low"], random["ci_high"], random["ci_method"]) == (None, None, "none")
    assert random["top_rule"] is None
    # one strategy without scores: no probability of improvement either way
    assert records(frames["improvement"]) == [
        {"strategy": "evo", "versus": "random", "probability": None, "ci_low": None,
         "ci_high": None, "ci_method": "none", "n": 2, "m": 0},
        {"strategy": "random", "versus": "evo", "probability": None, "ci_low": None,
         "ci_high": None, "ci_method": "none", "n": 0, "m": 2}]
    # adam scored 0.4 (seed 0), 0.5 (seed 1): evo seed 0 reached it after 2 trainings
    # (best 0.5), seed 1 after 3 (best 0.6); random never; no powersign reference, no row
    assert records(frames["reach"]) == [
        {"strategy": "evo", "reference": "adam", "trainings_mean": 2.5,
         "ci_low": pytest.approx(2.0), "ci_high": pytest.approx(3.0),
         "ci_method": "percentile", "reached": 2, "runs": 2,
         "note": "reached 2/2; percentile CI (BCa needs 3)"},
        {"strategy": "random", "reference": "adam", "trainings_mean": None, "ci_low": None,
         "ci_high": None, "ci_method": "none", "reached": 0, "runs": 1,
         "note": "reached 0/1: none got there within the budget"}]
    assert records(frames["references"]) == [
        {"reference": "adam", "fitness_mean": 0.45, "fitness_std": pytest.approx(0.0707107),
         "seeds": 2, "rule": "adam"},
        {"reference": "sgd", "fitness_mean": 0.1, "fitness_std": 0.0, "seeds": 2, "rule": "g"}]
    assert [(r["strategy"], r["rule"], r["fitness"], r["seed"])
            for r in records(frames["top_rules"])] == [
        ("evo", POWERSIGN, 0.8, 0), ("evo", "g", 0.6, 1)]
    runs = records(frames["runs"])
    assert [(r["strategy"], r["seed"], r["best_fitness"], r["best_rule"]) for r in runs] == [
        ("evo", 0, 0.8, POWERSIGN), ("evo", 1, 0.6, "g"), ("random", 0, None, None)]
    assert hand_report().as_dict()["runs"] == runs


def test_report_markdown_renders_the_frames():
    from evo_nos.experiments.rendering import markdown as report_markdown

    report = hand_report()
    text = report_markdown(report)
    for name, frame in report.tables().items():
        assert markdown(frame, **SHOWN[name]) in text, name
    assert ("| evo | 2 | 0.7000 | 0.6000 | 0.8000 | percentile | 0.1414 | 25.0% | 0.0% | 8.0 "
            f"| 3 | `{POWERSIGN}` |") in text
    assert "| evo | adam | 2.5 | 2.0 | 3.0 | percentile | 2 | 2 | reached 2/2;" in text
    assert "| reference | fitness (mean) | ± std | seeds | rule |" in text


def test_compare_writes_every_table_as_markdown_csv_and_json(tmp_path):
    uri = fresh_store(tmp_path / "store")
    for seed in (0, 1):
        Search(make_strategy("random", SearchSpace(), seed), StandInBackend("powersign"),
               budget=3, tracker=Tracker(experiment="t", tracking_uri=uri), progress=False,
               config={"seed": seed, "preset": "standin:powersign"}).run()
    out = tmp_path / "report"
    report = compare("t", uri, out=out)
    frames = report.tables()
    # one strategy, no reference scores: the improvement and reach tables are empty
    assert frames["improvement"].empty and frames["reach"].empty
    for name, frame in frames.items():
        assert (out / f"{name}.md").read_text() == markdown(frame, **SHOWN[name])
        assert json.loads((out / f"{name}.json").read_text()) == records(frame)
        # (CSV has no empty string apart from a missing value: names of unknown rules)
        pd.testing.assert_frame_equal(pd.read_csv(out / f"{name}.csv"),
                                      frame.replace({"": math.nan}), check_dtype=False)
        assert report.files[f"{name}_csv"] == str(out / f"{name}.csv")
    table = load_table(report.run_id, "comparison_table.json", uri)
    assert [list(r) for r in table] == [list(frames["strategies"].columns)]
    assert table[0]["strategy"] == "random" and table[0]["runs"] == 2


# -- documentation tables -----------------------------------------------------------------------
def test_documentation_tables_are_frames():
    prims = primitives_frame()
    assert list(prims.columns) == ["token", "kind", "math", "code", "reads", "meaning"]
    assert primitives_markdown().startswith(
        "| token | kind | math form | torch code | reads | meaning |\n|---|---|---|---|---|---|\n")
    assert len(primitives_markdown().splitlines()) == len(prims) + 2
    known = known_rules_frame()
    assert list(known.columns) == ["name", "rule", "math"]
    row = known[known["name"] == "powersign"].iloc[0]
    assert row["rule"] == POWERSIGN
    assert f"| `powersign` | `{POWERSIGN}` | {row['math']} |" in known_rules_markdown()
