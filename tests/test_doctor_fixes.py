"""The doctor's findings say what is true of the run at its end, in every place they are kept, and every fix they
suggest changes something in the run it was given to and applies to its model: real runs through the public API
(`gradwise.train`, `gradwise.fit`, `gradwise doctor DIR`)."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import gradwise
from gradwise.config import load_config, parse_value
from gradwise.doctor import Finding, analyze_run
from gradwise.doctor.fixes import RunContext

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # the case suite: bench/doctor/
from doctor.cases import CASES  # noqa: E402

QUIET = ["train.progress=none"]
ASSIGNMENT = re.compile(r"(?<![\w.])((?:model|optim|train|schedule|data|loss|doctor)(?:\.[a-z_]+)+)=(\[[^\]]*\]|"
                        r"[^\s;,()]+)")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # small runs on a shared machine


def _config_value(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _no_op_fixes(findings: list[Finding], config: dict[str, Any]) -> list[str]:
    """Fixes that set a config key to the value the run already has."""
    bad = []
    for f in findings:
        for fix in f.fixes:
            for key, value in ASSIGNMENT.findall(fix):
                current = _config_value(config, key)
                if current is not None and parse_value(value) == current:
                    bad.append(f"{f.code}: {fix}")
    return bad


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    from gradwise.cli import main

    with contextlib.suppress(SystemExit):
        main(list(args))
    return capsys.readouterr().out


def _as_set(findings: list[dict[str, Any]]) -> set[str]:
    return {json.dumps(d, sort_keys=True) for d in findings}


# ---- (issue 12.6) a finding judged again later reads the same in every place --------------------------------------


def test_the_best_epoch_of_an_overfitting_finding_is_the_one_the_run_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A one-cycle schedule on a small digits MLP: the validation loss rises while the LR climbs (overfitting is
    # reported with the best epoch so far, 4) and falls to a new best (epoch 11) once the LR anneals. Early stopping
    # restores that later epoch; the finding must name it in its message, evidence, findings.jsonl, summary.json,
    # run.findings and `gradwise doctor DIR` alike.
    out = tmp_path / "r"
    run = gradwise.train(None, ["data.dataset=digits", "model.name=mlp", "data.subsample=800", "train.epochs=30",
                                "train.early_stopping.patience=40", "optim.lr=0.015", "schedule.name=one_cycle",
                                f"out={out}", *QUIET])
    over = next(f for f in run.findings if f.code == "overfitting")
    kept = run.summary["best"]["epoch"]
    assert over.evidence["best_epoch"] == kept
    assert over.epoch is not None and over.epoch < kept  # reported before the best epoch came: the case in point
    assert f"(epoch {kept})" in over.message and "so far" not in over.message  # the run is over: its final best
    summary = json.loads((out / "summary.json").read_text())
    lines = [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()]
    assert lines == summary["findings"] == [f.to_dict() for f in run.findings]
    assert _as_set([f.to_dict() for f in analyze_run(out)]) == _as_set(summary["findings"])
    printed = _cli(capsys, "doctor", str(out))
    assert over.message in printed


def test_a_best_epoch_seen_mid_run_is_stated_as_of_then() -> None:
    from gradwise.doctor.rules import curve_findings

    rows = [{"epoch": i + 1, "step": 10 * (i + 1), "lr": 1e-3, "train_loss": t, "val_loss": v}
            for i, (t, v) in enumerate(zip([2.0, 1.0, 0.6, 0.4, 0.3, 0.2, 0.15],
                                           [2.0, 1.0, 0.8, 1.2, 1.3, 1.4, 1.5], strict=True))]
    live = next(f for f in curve_findings(rows, None, early_stopping=True) if f.code == "overfitting")
    final = next(f for f in curve_findings(rows, None, final=True, early_stopping=True) if f.code == "overfitting")
    assert "epoch 3 so far" in live.message and "epoch 3 so far" not in final.message and "epoch 3" in final.message


# ---- (issue 12.7) a fix differs from the run's config and applies to its model ------------------------------------


def test_fixes_never_repeat_the_current_setting(tmp_path: Path) -> None:
    # SGD-sized LR 0.1 on AdamW: lr_too_high and a divergence, whose usual fixes include the warmup-cosine schedule
    # and clipping at 1.0 -- both this run's defaults already
    run = gradwise.train(None, ["data.dataset=digits", "model.name=mlp", "data.subsample=300", "train.epochs=8",
                                "optim.lr=0.1", f"out={tmp_path / 'r'}", *QUIET])
    assert "lr_too_high" in {f.code for f in run.findings}
    fixes = [fix for f in run.findings for fix in f.fixes]
    assert not any("schedule.name=warmup_cosine" in fix or "train.clip_grad=1.0" in fix for fix in fixes), fixes
    config = run.config.to_dict()
    assert not _no_op_fixes(run.findings, config)
    assert not _no_op_fixes(analyze_run(tmp_path / "r"), config)
    assert all(f.fixes for f in run.findings)


def test_fixes_apply_to_the_model_in_use(tmp_path: Path) -> None:
    # logistic regression on MNIST-1D underfits; it has no hidden layers, so model.widths changes nothing: the fix
    # is a model that has them
    run = gradwise.train(None, ["data.dataset=mnist1d", "model.name=logreg", "train.epochs=15",
                                f"out={tmp_path / 'r'}", *QUIET])
    under = next(f for f in run.findings if f.code == "underfitting")
    assert under.message and under.severity == "warning"
    fixes = [fix for f in run.findings for fix in f.fixes]
    assert not any(k in fix for fix in fixes for k in ("model.widths", "model.dropout", "model.activation")), fixes
    assert any("model.name=mlp" in fix for fix in under.fixes)
    # ... and the weight decay it already has (AdamW's 0.01) is not suggested again
    assert not any("optim.weight_decay=0.01" in fix for fix in fixes)
    assert [f.fixes for f in analyze_run(tmp_path / "r") if f.code == "underfitting"] == [under.fixes]


def test_a_users_own_module_gets_advice_on_the_module(tmp_path: Path) -> None:
    # SGD at LR 1 kills the ReLUs of a user's MLP (gradwise.fit): model.* keys do not build that module
    case = CASES["dead_relu_high_lr"]
    kw = case.build()
    model, train = kw.pop("model"), kw.pop("train")
    run = gradwise.fit(model, train, out=tmp_path / "r", **kw)
    dead = next(f for f in run.findings if f.code == "dead_units")
    fixes = [fix for f in run.findings for fix in f.fixes]
    assert not any("model." in fix or "data." in fix for fix in fixes), fixes
    assert any("nn.LeakyReLU" in fix and "your module" in fix for fix in dead.fixes)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["doctor"]["run"]["source"] == "module"


def test_a_finding_whose_every_fix_is_in_place_keeps_its_message() -> None:
    # an MLP that already has ReLU, He init and BatchNorm: the vanishing-gradient fixes change nothing
    config = load_config(None, ["model.name=mlp", "model.activation=relu", "model.init=he_normal",
                                "model.norm=batch"]).to_dict()
    context = RunContext(config, "builtin", [64], 10, "classification")
    f = Finding("vanishing_gradients", "warning", "the first layer's gradient is 1e-4 of the last layer's",
                causes=["sigmoid/tanh in a deep stack", "a too-small initialization"],
                fixes=["model.activation=relu model.init=he_normal", "model.norm=batch"])
    context.adapt(f)
    assert f.message == "the first layer's gradient is 1e-4 of the last layer's"
    assert len(f.fixes) == 1 and "model.norm: batch" in f.fixes[0] and "sigmoid/tanh" in f.fixes[0]
    before = list(f.fixes)
    context.adapt(f)  # judging again changes nothing
    assert f.fixes == before
    # a logistic regression has no units to normalize: the same model, said as such
    logreg = RunContext(load_config(None, ["model.name=logreg"]).to_dict(), "builtin", [64], 10, "classification")
    f = Finding("dead_units", "warning", "m", causes=["a large step"], fixes=["model.norm=batch"])
    logreg.adapt(f)
    assert f.fixes == ["model.norm: batch would build the same logreg model: look for another cause (a large step)"]


def test_a_size_change_moves_to_the_size_key_the_model_has() -> None:
    fixes = ["a wider/deeper model (model.widths=<model.widths*2>)"]
    seen = {}
    for name, shape in (("mlp", [40]), ("cnn1d", [40]), ("gru", [40]), ("logreg", [40])):
        context = RunContext(load_config(None, [f"model.name={name}"]).to_dict(), "builtin", shape, 10,
                             "classification")
        f = Finding("underfitting", "warning", "m", fixes=list(fixes))
        context.adapt(f)
        seen[name] = f.fixes[0]
    assert seen["mlp"] == "a wider/deeper model (model.widths=[512, 512])"  # twice the default [256, 256]
    assert seen["cnn1d"] == "a wider/deeper model (model.channels=[64, 128, 256])"
    assert "model.hidden_size=" in seen["gru"]
    assert seen["logreg"] == "a wider/deeper model (model.name=mlp)"


# ---- findings printed live are printed literally --------------------------------------------------------------------


def test_findings_are_printed_without_rich_markup(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # the label_problem fix "check that X[i] and y[i] ..." holds what rich would read as an italic tag
    case = CASES["shuffled_labels_digits"]
    kw = case.build()
    model, train = kw.pop("model"), kw.pop("train")
    kw["progress"] = "plain"
    run = gradwise.fit(model, train, out=tmp_path / "r", **kw)
    assert any("X[i]" in fix for f in run.findings for fix in f.fixes)
    out = capsys.readouterr().out
    assert "X[i]" in out and "y[i]" in out
