"""What a run leaves to look at: steps.jsonl/probes.jsonl, report.html, `gradwise report` and `gradwise compare`."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import gradwise
import gradwise.errors
from gradwise.cli import main
from gradwise.train.checkpoint import load_checkpoint
from gradwise.train.rundir import read_jsonl

QUIET = ["train.progress=none"]


def train(out: Path, *overrides: str) -> gradwise.Run:
    return gradwise.train(overrides=[*QUIET, f"out={out}", *overrides])


def html(run_dir: Path) -> str:
    return (run_dir / "report.html").read_text()


def cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code or 0)


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    return x[:400], y[:400], x[400:500], y[400:500]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


# ------------------------------------------------------------------------------------------------ per-step records
def test_completed_run_records_steps_and_probes_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "iris"
    run = train(out, "data.dataset=iris", "model.name=mlp", "train.epochs=3", "train.batch_size=16",
                "train.log_every=3")
    steps = run.summary["steps"]  # 105 train rows / 16 = 7 steps per epoch, 21 in all
    rows = read_jsonl(out / "steps.jsonl")
    # every 3 steps, and the steps of each row add up to the whole run (none lost, none twice)
    assert [r["step"] for r in rows] == list(range(3, steps + 1, 3)) + ([steps] if steps % 3 else [])
    assert sum(r["steps"] for r in rows) == steps
    assert all(math.isfinite(r["loss"]) and r["lr"] >= 0 for r in rows) and rows[0]["lr"] > 0
    # the LR each row records is the schedule's at that step: the epoch rows' LR at their step agrees
    by_step = {r["step"]: r["lr"] for r in rows}
    for m in run.history:
        if m["step"] in by_step:
            assert by_step[m["step"]] == pytest.approx(m["lr"])
    probes = read_jsonl(out / "probes.jsonl")
    step_probes = [p for p in probes if p["kind"] == "step"]
    assert step_probes and set(step_probes[0]["layers"]) == {"block1.0.weight", "block2.0.weight", "head.weight"}
    assert all(v["update_ratio"] > 0 and v["grad"] > 0 for v in step_probes[0]["layers"].values())
    assert [p["epoch"] for p in probes if p["kind"] == "activations"] == [1, 2, 3]

    page = html(out)
    assert page.count("<svg") >= 7  # loss, metrics, LR, gradient norms, update ratios, dead units, confusion matrix
    assert "Confusion matrix (test)" in page and "setosa" in page
    # the page's macro precision/recall/F1 (scikit-learn on the final weights' test predictions) are the run's own
    macro = re.search(r"<td>macro average</td><td>([0-9.]+)</td><td>([0-9.]+)</td><td>([0-9.]+)</td>", page)
    assert macro is not None
    test = run.summary["test"]
    assert [float(v) for v in macro.groups()] == pytest.approx(
        [test["test_precision"], test["test_recall"], test["test_f1"]], abs=1e-3)
    assert "head.weight" in page and "block1.0.weight" in page  # the layer table and the gradient-flow legend
    assert "data_report" not in page or "rows_loaded" in page
    # self-contained: nothing fetched (the SVG namespace is a name, not a fetch), no script
    assert not re.findall(r"(?:src|href)=['\"]?https?:", page) and "<script" not in page
    assert "default-src 'none'" in page


def test_resume_neither_repeats_nor_loses_steps(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    kw = {"loss": "cross_entropy", "epochs": 3, "batch_size": 32, "checkpoint_every": 5, "progress": "none",
          "config": {"train": {"log_every": 3}}, "threads": 1}
    full = gradwise.fit(mlp(), (x, y), val=(xv, yv), out=tmp_path / "full", **kw)

    class Crash(gradwise.Callback):
        def on_batch_end(self, trainer: object) -> None:
            if trainer.step == 23:  # type: ignore[attr-defined]
                trainer.checkpoints.flush()  # type: ignore[attr-defined]
                raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        gradwise.fit(mlp(), (x, y), val=(xv, yv), out=tmp_path / "cut", callbacks=[Crash()], **kw)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 20
    cut_rows = read_jsonl(tmp_path / "cut" / "steps.jsonl")
    assert cut_rows[-1]["step"] == 23  # the crash wrote what it had: steps 22-23 are past the checkpoint
    gradwise.fit(mlp(), (x, y), val=(xv, yv), resume=tmp_path / "cut", **{k: v for k, v in kw.items()
                                                                         if k not in ("config", "threads")})
    a, b = read_jsonl(tmp_path / "full" / "steps.jsonl"), read_jsonl(tmp_path / "cut" / "steps.jsonl")
    assert [(r["step"], r["steps"], r["lr"]) for r in b] == [(r["step"], r["steps"], r["lr"]) for r in a]
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-6)
    pa, pb = read_jsonl(tmp_path / "full" / "probes.jsonl"), read_jsonl(tmp_path / "cut" / "probes.jsonl")
    assert [(p["kind"], p["step"]) for p in pb] == [(p["kind"], p["step"]) for p in pa]
    assert full.status == "completed"
    # fit() on the user's own model and tensors: evaluated on val (there is no test split), classes by index
    page = html(tmp_path / "full")
    assert "Confusion matrix (val)" in page and "<td>Linear</td>" in page


# ---------------------------------------------------------------------------------------------- faulty runs
NAN_RUN = ["data.dataset=diabetes", "model.name=mlp", "optim.name=sgd", "optim.lr=5", "optim.momentum=0",
           "train.clip_grad=null", "schedule.name=constant", "train.batch_size=32"]


def test_failed_nan_run_report_marks_the_finding(tmp_path: Path) -> None:
    out = tmp_path / "nan"
    run = train(out, *NAN_RUN, "train.epochs=3", "doctor.repair=false")
    assert run.status == "failed"
    rows = read_jsonl(out / "steps.jsonl")
    assert rows and rows[-1]["loss"] in ("inf", "nan")  # the step that blew up is recorded
    page = html(out)
    assert "status failed" in page
    marker = re.search(r'<g class="finding sev-error" data-code="nonfinite_values"><title>([^<]*)</title>', page)
    assert marker is not None
    tip = marker.group(1)
    assert "the training loss became" in tip and "fix:" in tip and "evidence:" in tip


def test_a_run_that_raises_still_leaves_its_report(tmp_path: Path) -> None:
    # the doctor off: the loop itself stops the NaN run with a TrainingError (the on_exception path)
    out = tmp_path / "raised"
    with pytest.raises(gradwise.errors.TrainingError):
        train(out, *NAN_RUN, "train.epochs=3", "doctor.enabled=false")
    page = html(out)
    assert "status failed" in page and "TrainingError: the training loss became" in page
    assert page.count("<svg") >= 2  # the loss and LR curves up to the failure
    assert read_jsonl(out / "steps.jsonl")[-1]["loss"] in ("inf", "nan")


def test_repair_rollback_is_an_event_row_and_a_marker(tmp_path: Path) -> None:
    out = tmp_path / "repair"
    run = train(out, *NAN_RUN, "train.epochs=3", "doctor.repair=true")
    assert run.status == "completed" and run.summary["actions"][0]["action"] == "rollback"
    rows = read_jsonl(out / "steps.jsonl")
    event = next(r for r in rows if "event" in r)
    before = rows[:rows.index(event)]
    assert event["event"] == "rollback" and event["step"] == 0 and event["from_step"] == before[-1]["step"]
    assert before[-1]["lr"] == 5.0  # the undone steps keep the LR they ran with
    assert all(r["lr"] == pytest.approx(0.5) for r in rows[rows.index(event) + 1:])
    page = html(out)
    assert '<g class="action" data-code="rollback">' in page and "undone" in page


# --------------------------------------------------------------------------------------- evaluation sections
def test_regression_report_draws_predicted_vs_true_and_residuals(tmp_path: Path) -> None:
    out = tmp_path / "reg"
    train(out, "data.dataset=diabetes", "model.name=mlp", "train.epochs=2")
    page = html(out)
    assert "Predicted vs true (test)" in page and "Residuals (test)" in page
    mae = float(re.search(r"MAE ([0-9.e+-]+)", page).group(1))  # type: ignore[union-attr]
    summary = json.loads((out / "summary.json").read_text())
    # the page's MAE is the run's own test MAE (in the target's units): same weights, same rows
    assert mae == pytest.approx(summary["test"]["test_mae"], rel=1e-3)


def test_binary_report_has_roc_and_pr_curves(tmp_path: Path) -> None:
    out = tmp_path / "bin"
    train(out, "data.dataset=breast_cancer", "model.name=mlp", "train.epochs=2")
    page = html(out)
    auc = re.search(r"ROC curve \(test\): AUROC ([0-9.]+)", page)
    assert auc is not None and 0.5 < float(auc.group(1)) <= 1.0
    assert "Precision-recall curve (test)" in page


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{evil if i % 2 else 'b&c'}" for i in range(80)]
    csv = tmp_path / "evil.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "evil"
    # a run name cannot hold '/' (it is part of the directory's name): the tag without its closing one
    train(out, f"data.dataset={csv}", "data.target=label", "model.name=mlp", "train.epochs=1", "name=<script>x&y")
    page = html(out)
    assert "<script" not in page
    assert "<h1>&lt;script&gt;x&amp;y <span" in page and "<title>gradwise report: &lt;script&gt;x&amp;y" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the class name, escaped
    assert "b&amp;c" in page and "b&c<" not in page
    cm = page[page.index("Confusion matrix"):]
    assert "&lt;script&gt;" in cm[:4000]  # the class label in the confusion matrix


# ---------------------------------------------------------------------------------------------- the commands
def test_report_command_rebuilds_the_report_of_an_older_run(tmp_path: Path) -> None:
    out = tmp_path / "old"
    train(out, "data.dataset=iris", "model.name=mlp", "train.epochs=2")
    for name in ("report.html", "steps.jsonl", "probes.jsonl"):  # a run trained before these existed
        (out / name).unlink()
    assert cli(["report", str(out)]) == 0
    page = html(out)
    assert page.count("<svg") >= 3 and "Confusion matrix (test)" in page and "no probes.jsonl" in page
    assert cli(["report", str(tmp_path / "missing")]) == 2


def test_compare_shows_the_differing_key_and_final_metrics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train(tmp_path / "a", "data.dataset=iris", "model.name=mlp", "train.epochs=2", "optim.lr=0.003")
    train(tmp_path / "b", "data.dataset=iris", "model.name=mlp", "train.epochs=2", "optim.lr=0.01")
    page_path = tmp_path / "cmp.html"
    assert cli(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(page_path)]) == 0
    page = page_path.read_text()
    diff = page[page.index("Config differences"):page.index("Final metrics")]
    assert "<th>optim.lr</th><td>0.003</td><td>0.01</td>" in diff
    assert "train.epochs" not in diff  # only keys that differ
    assert page.count("<svg") >= 2 and "val_accuracy" in page[page.index("Final metrics"):]
    capsys.readouterr()
    assert cli(["compare", str(tmp_path / "a"), str(tmp_path)]) == 2
    assert "is not a gradwise run directory" in capsys.readouterr().err


def test_a_report_that_cannot_be_written_never_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    import gradwise.report.writer as writer

    def broken(*args: object, **kwargs: object) -> str:
        raise ValueError("drawing failed")

    monkeypatch.setattr(writer, "build_report", broken)
    run = train(tmp_path / "r", "data.dataset=iris", "model.name=mlp", "train.epochs=1")
    assert run.status == "completed" and not (tmp_path / "r" / "report.html").exists()
    assert "warning: report.html not written: ValueError: drawing failed" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ tuning study
def test_tune_writes_a_self_contained_study_report(tmp_path: Path) -> None:
    import io

    import yaml
    from rich.console import Console

    from gradwise.tune.command import tune

    cfg = {"name": "iris-<b>tune", "data": {"dataset": "iris"}, "model": {"name": "mlp", "widths": [16]},
           "train": {"epochs": 2, "progress": "none"},
           "tune": {"metric": "val_accuracy", "trials": 4, "sampler": "random", "pruner": "none",
                    "space": {"optim.lr": {"low": 1e-3, "high": 0.1, "log": True},
                              "model.activation": ["relu", "tanh"]}}}
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / "study"
    code = tune(config, None, None, None, None, False, out, [], console=Console(file=io.StringIO(), width=160))
    assert code == 0
    page = (out / "report.html").read_text()
    for title in ("Optimization history", "Parameter importances", "Parallel coordinates"):
        assert f"<h3>{title}</h3><div class='plot'><svg" in page
    assert "Leaderboard" in page and "optim.lr" in page and "activation:" in page  # the best trial's config
    assert "<h1>Study iris-" in page and "<b>" not in page  # the name is the user's text
    assert "<script" not in page and not re.findall(r"(?:src|href)=['\"]?https?:", page)
    links = re.findall(r"<a href='([^']+)'>", page)  # each trial's own report, relative to the study
    assert links and all((out / link).exists() for link in links)
