"""The training doctor through the public API: real faults produce their findings, healthy runs stay quiet, repair
recovers a NaN run, findings survive the run directory round trip, and the doctor never changes the training."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import gradwise
from gradwise.doctor import CODES, Finding, analyze_run
from gradwise.doctor.cases import CASE_LIST, CASES, data, mlp, repaired, run_case, run_reference
from gradwise.errors import TrainingError

QUIET = {"progress": "none"}

# one faulty case per family of codes (the full suite runs under -m slow)
REPRESENTATIVE = [
    "sgd_lr_10x_nan",  # nonfinite_values
    "sgd_lr_high_diverging_wine",  # diverging_loss
    "cnn_sgd_lr_too_high",  # lr_too_high (1-D CNN)
    "sgd_lr_too_low_digits",  # lr_too_low
    "irnn_gain_exploding",  # exploding_gradients (RNN)
    "deep_sigmoid_vanishing",  # vanishing_gradients
    "dead_relu_high_lr",  # dead_units
    "sigmoid_unscaled_wine",  # saturated_units + unnormalized_inputs
    "sgd_lr_high_oscillating_digits",  # oscillating_loss
    "constant_init_tanh_plateau",  # plateau + bad_initialization
    "zero_init_digits",  # no_learning
    "overfit_tiny_data",  # overfitting
    "missing_activations_mnist1d",  # underfitting (wiring)
    "shuffled_labels_digits",  # label_problem (runtime)
    "one_based_labels_iris",  # label_problem (pre-flight)
    "imbalance_95_5",  # class_imbalance
    "duplicated_rows_leak",  # data_leakage
    "redundant_softmax",  # loss_output_mismatch
    "relu_on_regression_output",  # loss_output_mismatch (range)
    "l2_too_big_wine",  # over_regularization
    "handmade_dropout_no_rescale",  # train_eval_mismatch
    "gru_lr_too_high",  # lr_too_high (GRU)
]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the cases are tiny; threads only add contention on a shared machine


def test_representative_cases_cover_every_code() -> None:
    covered = {code for name in REPRESENTATIVE for code in CASES[name].expect}
    assert covered == set(CODES)  # the fast subset still exercises every finding code
    assert {code for c in CASE_LIST for code in c.expect} == set(CODES)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_fault_produces_its_findings(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    res = run_case(case, tmp_path)
    assert not res.missing, f"{name}: expected {case.expect}, found {res.found} (status {res.status})"


@pytest.mark.parametrize("name", [c.name for c in CASE_LIST if c.control])
def test_healthy_control_raises_no_warning(name: str, tmp_path: Path) -> None:
    res = run_case(CASES[name], tmp_path)
    assert res.status == "completed"
    assert not res.alarms, f"{name}: false alarm {res.alarms}"


def _nan_run(out: Path, repair: bool) -> gradwise.Run:
    # plain SGD at LR 5 (10x the 0.5 that works here), constant schedule, no clipping: NaN within the first steps
    xt, yt, xv, yv = data("diabetes")
    return gradwise.fit(mlp(10, 1, (32, 32)), (xt, yt), val=(xv, yv), loss="mse", optimizer="sgd", lr=5.0,
                        momentum=0.0, clip_grad=None, schedule="constant", batch_size=32, epochs=15, out=out,
                        repair=repair, **QUIET)


def test_repair_recovers_a_nan_run(tmp_path: Path) -> None:
    plain = _nan_run(tmp_path / "plain", repair=False)
    assert plain.status == "failed" and plain.findings[0].code == "nonfinite_values"
    run = _nan_run(tmp_path / "repair", repair=True)
    assert run.status == "completed"
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in run.history)
    assert run.history[-1]["val_loss"] < 0.9  # learned something (the know-nothing loss is 1.0)
    first = run.summary["actions"][0]
    assert first["action"] == "rollback" and first["changes"]["finding"] == "nonfinite_values"
    assert first["changes"]["lr_factor"] == pytest.approx(0.1) and first["changes"]["clip_grad"] == 1.0
    assert first["outcome"] == "recovered"
    assert run.config.optim.lr == 5.0 and run.summary["final"]["lr"] == pytest.approx(0.5, rel=0.05)
    assert "nonfinite_values" in {f.code for f in run.findings}
    summary = json.loads((tmp_path / "repair" / "summary.json").read_text())
    assert summary["actions"] == run.summary["actions"] and summary["doctor"]["repairs"] >= 1
    # the checkpoint on disk is a good state, never the NaN one
    state = torch.load(tmp_path / "repair" / "checkpoints" / "last.pt", weights_only=True)
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values())


def test_repair_recovers_the_suite_nan_case(tmp_path: Path) -> None:
    case = CASES["sgd_lr_10x_nan"]
    res = run_case(case, tmp_path, repair=True, reference=run_reference(case, tmp_path))
    assert res.repaired, f"repaired run {res.status}, best val {res.best_val}, actions {res.actions}"


def test_repair_is_bounded_and_off_by_default(tmp_path: Path) -> None:
    case = CASES["iris_sgd_lr_diverging"]  # LR 50x too high: the doctor acts at most max_repairs times
    kw = case.build()
    model, train = kw.pop("model"), kw.pop("train")
    run = gradwise.fit(model, train, out=tmp_path / "r", repair=True, **kw)
    assert 1 <= len([a for a in run.summary["actions"] if a["changes"].get("by") == "doctor"]) <= 3
    plain = run_case(case, tmp_path)
    assert plain.actions == []


def test_nan_guard_names_the_module(tmp_path: Path) -> None:
    class Log(nn.Module):  # log of a possibly negative number: NaN from the first step
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(x)

    xt, yt, _, _ = data("wine")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(13, 8), Log(), nn.Linear(8, 3))
    run = gradwise.fit(model, (xt, yt), loss="cross_entropy", epochs=2, out=tmp_path / "r", **QUIET)
    assert run.status == "failed"
    f = run.findings[0]
    assert f.code == "nonfinite_values" and f.severity == "error"
    assert "1 (Log)" in f.evidence["first_nonfinite"] and "Log" in f.message


def test_findings_round_trip_through_the_run_directory(tmp_path: Path) -> None:
    case = CASES["sigmoid_unscaled_wine"]
    kw = case.build()
    model, train = kw.pop("model"), kw.pop("train")
    run = gradwise.fit(model, train, out=tmp_path / "r", **kw)
    assert run.findings, "this fault must produce findings"
    lines = (tmp_path / "r" / "findings.jsonl").read_text().splitlines()
    from_file = [Finding.from_dict(json.loads(line)) for line in lines]
    assert {json.dumps(f.to_dict(), sort_keys=True) for f in from_file} == \
        {json.dumps(f.to_dict(), sort_keys=True) for f in run.findings}
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["findings"] == [f.to_dict() for f in run.findings]
    assert [f.rank for f in run.findings] == sorted((f.rank for f in run.findings), reverse=True)
    for f in run.findings:  # every field a reader needs
        assert f.code in CODES and f.message and f.fixes and f.causes and f.epoch is not None
        json.dumps(f.evidence)  # plain JSON
        assert Finding.from_dict(f.to_dict()) == f
    with pytest.raises(ValueError, match="unknown finding code"):
        Finding("not_a_code", "warning", "x")


def test_analyze_run_finds_curve_problems_in_a_run_without_the_doctor(tmp_path: Path) -> None:
    case = CASES["sgd_lr_high_diverging_wine"]
    kw = case.build()
    model, train = kw.pop("model"), kw.pop("train")
    run = gradwise.fit(model, train, out=tmp_path / "div", doctor=False, **kw)
    assert run.findings == []
    found = analyze_run(tmp_path / "div")
    assert "diverging_loss" in {f.code for f in found}
    div = next(f for f in found if f.code == "diverging_loss")
    assert div.epoch is not None and "<lr" not in " ".join(div.fixes)  # fixes carry this run's numbers

    # a run that crashed on a NaN (doctor off: the loop raises) is still diagnosed from its files
    xt, yt, xv, yv = data("diabetes", scale=False, scale_y=False)
    torch.manual_seed(0)
    with pytest.raises(TrainingError):
        gradwise.fit(mlp(10, 1, (32,)), (xt * 100, yt), val=(xv, yv), loss="mse", optimizer="sgd", lr=10.0,
                     clip_grad=None, epochs=3, doctor=False, out=tmp_path / "nan", **QUIET)
    assert "nonfinite_values" in {f.code for f in analyze_run(tmp_path / "nan")}


def test_analyze_run_keeps_the_live_findings(tmp_path: Path) -> None:
    case = CASES["redundant_softmax"]
    kw = case.build()
    model, train = kw.pop("model"), kw.pop("train")
    run = gradwise.fit(model, train, out=tmp_path / "r", **kw)
    again = analyze_run(tmp_path / "r")
    assert {f.code for f in run.findings} <= {f.code for f in again}
    with pytest.raises(gradwise.CheckpointError):
        analyze_run(tmp_path / "missing")


def test_doctor_does_not_change_the_training(tmp_path: Path) -> None:
    # BatchNorm buffers and dropout's RNG draws are what a careless probe would disturb
    xt, yt, xv, yv = data("digits")
    runs = []
    for doctor in (True, False):
        model = mlp(64, 10, (64, 32), norm=True, dropout=0.3, seed=3)
        run = gradwise.fit(model, (xt, yt), val=(xv, yv), loss="cross_entropy", epochs=3, batch_size=64,
                           doctor=doctor, out=tmp_path / f"d{int(doctor)}", probe_every=5, **QUIET)
        runs.append(run)
    a, b = runs[0].model.state_dict(), runs[1].model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in runs[0].history] == [h["train_loss"] for h in runs[1].history]
    assert [h["val_loss"] for h in runs[0].history] == [h["val_loss"] for h in runs[1].history]


def test_resume_does_not_repeat_the_preflight(tmp_path: Path) -> None:
    case = CASES["imbalance_95_5"]
    kw = case.build()
    model, train = kw.pop("model"), kw.pop("train")
    kw["epochs"] = 2
    gradwise.fit(model, train, out=tmp_path / "r", **kw)
    n_before = len((tmp_path / "r" / "findings.jsonl").read_text().splitlines())
    kw = case.build()
    model, train = kw.pop("model"), kw.pop("train")
    kw["epochs"] = 4
    run = gradwise.fit(model, train, resume=tmp_path / "r", **kw)
    assert run.summary["epochs_completed"] == 4
    rows = [json.loads(line) for line in (tmp_path / "r" / "findings.jsonl").read_text().splitlines()]
    preflight = [r["code"] for r in rows if r["epoch"] == 0]
    assert preflight == ["class_imbalance"] and len(rows) >= n_before  # reported once, before the first start
    assert "class_imbalance" in {f.code for f in run.findings}  # and the resumed doctor still knows it


@pytest.mark.slow
def test_full_case_suite_meets_the_goals(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("doctor_cases", Path(__file__).parents[1] / "bench" /
                                                  "doctor_cases.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["doctor_cases"] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    outcomes = [bench._one(c.name, str(tmp_path), True) for c in CASE_LIST]
    s = bench.summarize(outcomes)
    assert s["faulty"] >= 20 and s["controls"] >= 6
    assert s["recall"] >= 0.95, s
    assert not s["codes_missing"], s["codes_missing"]
    assert not s["false_alarms"], s["false_alarms"]
    assert s["repaired"] / s["repairs"] >= 0.80, s
    fixed = [o.repair for o in outcomes if o.repair is not None]
    assert all(r is not None and (r.repaired or not repaired(r, CASES[r.name])) for r in fixed)
