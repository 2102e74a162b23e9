"""Damaged or foreign files in a run directory (issue 18, item 8).

`gradwise train --resume DIR` on a last.pt that is another model's, another optimizer's, a list, `{"model": {}}`,
random bytes, cut short, or a gradwise state with one field damaged: exit status 2 and one line on stderr naming
the file, never a traceback, never torch's advice to load with weights_only=False. `gradwise doctor DIR` on an
edited or non-UTF-8 summary.json, metrics.jsonl, findings.jsonl or config.yaml: no traceback, the damaged file
named, and what can be read still analysed.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from gradwise.cli import main
from gradwise.doctor.analyze import DamagedFileWarning, analyze_run
from gradwise.errors import CheckpointError
from gradwise.train.checkpoint import check_training_state, training_state_problem

IRIS = ["train", "data.dataset=iris", "model.name=mlp", "train.epochs=2", "train.progress=none"]


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`gradwise ARGS` in this process: (exit status, stdout, stderr). The doctor's notes on damaged files are
    DamagedFileWarnings when the CLI does not print them itself: they count as stderr."""
    with warnings.catch_warnings(record=True) as issued, pytest.raises(SystemExit) as ended:
        warnings.simplefilter("always")
        main(args)
    out, err = capsys.readouterr()
    notes = "".join(f"{w.message}\n" for w in issued if issubclass(w.category, DamagedFileWarning))
    return int(ended.value.code or 0), out, err + notes


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Finished runs: iris MLP (AdamW, doctor on), the same model with SGD, another MLP, and a diverging run."""
    root = tmp_path_factory.mktemp("runs")
    made = {"good": [], "sgd": ["optim.name=sgd", "doctor.enabled=false"],
            "other": ["model.widths=[7]", "doctor.enabled=false"],
            "diverging": ["optim.lr=1000", "train.clip_grad=null", "train.epochs=3", "doctor.enabled=false"]}
    for name, extra in made.items():
        with pytest.raises(SystemExit) as ended:
            main([*IRIS, *extra, "--out", str(root / name)])
        assert ended.value.code == 0
    return {name: root / name for name in made}


def copy_run(runs: dict[str, Path], tmp_path: Path, name: str = "good") -> Path:
    run = tmp_path / name
    shutil.copytree(runs[name], run)
    return run


class Foreign:
    """An object of a class torch's weights-only loader refuses (its error advises weights_only=False)."""


def state_of(runs: dict[str, Path]) -> dict[str, Any]:
    return torch.load(runs["good"] / "checkpoints" / "last.pt", weights_only=True)


# each writes a damaged or foreign last.pt, given the run holding it and the module's runs
DAMAGED: dict[str, Callable[[Path, dict[str, Path]], Any]] = {
    "another model": lambda p, r: shutil.copy(r["other"] / "checkpoints" / "last.pt", p),
    "another optimizer": lambda p, r: shutil.copy(r["sgd"] / "checkpoints" / "last.pt", p),
    "random bytes": lambda p, r: p.write_bytes(os.urandom(4096)),
    "cut short": lambda p, r: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty file": lambda p, r: p.write_bytes(b""),
    "a pickled object": lambda p, r: torch.save({"model": Foreign()}, p),
    "damaged callbacks": lambda p, r: torch.save({**state_of(r), "callbacks": {"early_stopping": {}}}, p),
    "damaged early stopping": lambda p, r: torch.save(
        {**state_of(r), "callbacks": {"early_stopping": {"best": "0.5", "best_epoch": 1, "wait": 0}}}, p),
    "damaged doctor": lambda p, r: torch.save(
        {**state_of(r), "callbacks": {**state_of(r)["callbacks"], "doctor": {"findings": [5], "repairs": "x"}}}, p),
    "damaged optimizer": lambda p, r: torch.save({**state_of(r), "optimizer": {"state": {}, "param_groups": []}}, p),
    "damaged rng": lambda p, r: torch.save({**state_of(r), "rng": {"python": 1}}, p),
    "damaged history": lambda p, r: torch.save({**state_of(r), "history_json": "[{"}, p),
}
# read by api._open_run (check_resume_overrides reads state["epoch"]) before the trainer sees the state: caught
# there by checkpoint.load_training_state
NEEDS_API = {
    "a list": lambda p, r: torch.save([1, 2, 3], p),
    "{'model': {}}": lambda p, r: torch.save({"model": {}}, p),
    "weights only": lambda p, r: torch.save({"model": state_of(r)["model"]}, p),
    "damaged epoch": lambda p, r: torch.save({**state_of(r), "epoch": "x"}, p),
}


@pytest.mark.parametrize("damage", [*DAMAGED, *NEEDS_API])
def test_resume_from_a_damaged_or_foreign_checkpoint_is_one_line(
        damage: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path)
    last = run / "checkpoints" / "last.pt"
    {**DAMAGED, **NEEDS_API}[damage](last, runs)
    summary = (run / "summary.json").read_bytes()
    code, _, err = cli(["train", "--resume", str(run), "train.epochs=3", "train.progress=none"], capsys)
    line = one_line(err)
    assert code == 2 and f"'{last}'" in line
    assert "weights_only" not in line and "unexpected" not in line
    assert (run / "summary.json").read_bytes() == summary  # a refused resume does not rewrite the run's record
    if damage == "another optimizer":
        assert "optim.name" in line


def test_each_damaged_field_of_a_training_state_is_named(runs: dict[str, Path]) -> None:
    good = state_of(runs)
    assert training_state_problem(good) is None
    path = Path("run/checkpoints/last.pt")
    cases = {
        "epoch": ({**good, "epoch": -1}, "'epoch' is -1"),
        "step": ({**good, "step": 2.5}, "'step' is 2.5"),
        "bool": ({**good, "loss_count": True}, "'loss_count' is True"),
        "order": ({**good, "batch_in_epoch": good["step"] + 1}, "more than its 'step'"),
        "loss": ({**good, "loss_sum": "x"}, "'loss_sum' is 'x'"),
        "kept": ({**good, "step_losses": [1.0], "step_sizes": []}, "'step_losses' and 'step_sizes'"),
        "history": ({**good, "history_json": "{}"}, "'history_json' is not a list of rows"),
        "schedule": ({**good, "schedule": [1]}, "'schedule'"),
        "weights": ({**good, "model": {"w": [1.0]}}, "'model' is not a state_dict of tensors"),
        "missing": ({k: v for k, v in good.items() if k not in ("rng", "step")}, "no 'step', 'rng'"),
        "list": ([good], "holds a list"),
        "long": ({**good, "epoch": "x" * 10_000}, "..."),
    }
    for name, (state, expected) in cases.items():
        with pytest.raises(CheckpointError) as caught:
            check_training_state(state, path)
        message = str(caught.value)
        assert expected in message and f"'{path}'" in message, name
        assert len(message) < 400 and "\n" not in message, name
    # the checks leave the random-number generators as they were (a bad rng state is tried, then put back)
    before = torch.get_rng_state()
    assert "random-number state" in (training_state_problem({**good, "rng": {**good["rng"], "numpy": 1}}) or "")
    assert torch.equal(torch.get_rng_state(), before)


# --------------------------------------------------------------------------------------------- gradwise doctor
BINARY = b"\xff\xfe\x80 not text\n"
EDITS: dict[str, tuple[str, bytes]] = {
    "summary not UTF-8": ("summary.json", BINARY),
    "summary not JSON": ("summary.json", b'{"status": '),
    "summary a list": ("summary.json", b"[]"),
    "summary doctor a string": ("summary.json", b'{"status": "completed", "doctor": "x"}'),
    "summary facts of the wrong type": ("summary.json",
                                        b'{"status": "completed", "doctor": {"facts": {"narrowest": 5}}}'),
    "summary facts a list": ("summary.json", b'{"status": "completed", "doctor": {"facts": [1]}}'),
    "findings not UTF-8": ("findings.jsonl", BINARY),
    "findings of the wrong types": ("findings.jsonl", b'{"code": "plateau", "severity": "warning", "message": 5, '
                                                      b'"fixes": 3}\n[1]\n{"code": "x"}\n'),
    "config not UTF-8": ("config.yaml", BINARY),
    "config not YAML": ("config.yaml", b"a: [\n"),
    "config sections of the wrong type": ("config.yaml", b"train: {epochs: x, early_stopping: 5}\n"),
    "config train a list": ("config.yaml", b"train: [1]\n"),
    "data report of the wrong types": ("data_report.json", b'{"class_counts_before_sampling": 5, "task": 3}'),
}


def damage_metrics(run: Path) -> None:
    """metrics.jsonl with a non-UTF-8 line, a row of strings and a last line cut short, around the real rows."""
    rows = (run / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (run / "metrics.jsonl").write_bytes(rows[0] + BINARY + b'{"epoch": 2, "train_loss": "abc"}\n' + b"".join(rows[1:])
                                        + b'{"epoch": 4, "train_lo')


@pytest.mark.parametrize("edit", list(EDITS))
def test_doctor_on_an_edited_or_damaged_file_names_it_and_analyses_the_rest(
        edit: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path, "diverging")
    name, content = EDITS[edit]
    (run / name).write_bytes(content)
    code, out, err = cli(["doctor", str(run)], capsys)
    assert "Traceback" not in err and "unexpected" not in err and "error:" not in err, err
    assert "diverging_loss" in out  # the curve is still read and judged
    assert code == (1 if any(f.severity == "error" for f in analyze_run(runs["diverging"])) else 0)
    if name != "data_report.json":
        assert name in err  # which file is damaged


def test_doctor_on_a_damaged_metrics_jsonl_keeps_its_readable_rows(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path, "diverging")
    intact = {f.code for f in analyze_run(run)}
    damage_metrics(run)
    notes: list[str] = []
    assert {f.code for f in analyze_run(run, notes)} == intact and "diverging_loss" in intact
    assert any(n.startswith("metrics.jsonl") and "2 line(s) damaged" in n for n in notes), notes
    assert any("1 row(s) without a numeric train_loss" in n for n in notes), notes
    code, out, err = cli(["doctor", str(run)], capsys)
    assert code in (0, 1) and "diverging_loss" in out and "metrics.jsonl" in err and "Traceback" not in err


@pytest.mark.parametrize("missing", ["metrics.jsonl", "summary.json", "findings.jsonl", "config.yaml"])
def test_doctor_with_a_file_missing_or_unreadable(missing: str, runs: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(runs, tmp_path)
    (run / missing).unlink(missing_ok=True)
    code, out, err = cli(["doctor", str(run)], capsys)
    assert code in (0, 1) and "Traceback" not in err and "error:" not in err, err
    # a folder where the file should be: it cannot be read, and says so
    (run / missing).mkdir()
    code, out, err = cli(["doctor", str(run)], capsys)
    assert code in (0, 1) and "Traceback" not in err and "error:" not in err, err
    assert f"{missing} cannot be read" in err


@pytest.mark.parametrize("edit", list(EDITS))
def test_report_on_an_edited_or_damaged_file_is_still_written(
        edit: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gradwise report DIR` on a damaged directory: the page is written from what can be read, never a traceback."""
    run = copy_run(runs, tmp_path, "diverging")
    (run / "report.html").unlink(missing_ok=True)
    name, content = EDITS[edit]
    (run / name).write_bytes(content)
    damage_metrics(run)
    code, out, err = cli(["report", str(run)], capsys)
    assert code == 0 and "Traceback" not in err and "unexpected" not in err, err
    page = (run / "report.html").read_text()
    assert "<svg" in page  # the readable rows of metrics.jsonl still draw the curves
