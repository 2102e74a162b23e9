"""`optim.lr: auto` and the LR finder's curve on real data: no smoothing lag, a pick that trains as well as the
default, the plot in the run directory, rounded printouts, and the schedule's mean-LR correction."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradwise
from gradwise.api import LRSearch, find_lr, lr_find_dir, prepare, save_lr_find
from gradwise.config import RunConfig, ScheduleConfig
from gradwise.recipes.schedules import LRFindResult, _suggest, schedule_mean_factor, smooth_losses

QUIET = ["train.progress=none", "doctor.enabled=false"]


pytestmark = pytest.mark.usefixtures("single_thread")


def _digits_sweep(optimizer: str) -> LRSearch:
    cfg, model, loss_fn, loader, device = prepare(None, ["data.dataset=digits", "model.name=mlp",
                                                         f"optim.name={optimizer}", "optim.lr=auto"])
    return find_lr(cfg, model, loss_fn, loader, device)


def _running_median(values: list[float], width: int = 5) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    h = width // 2
    return np.array([np.median(v[max(0, i - h): i + h + 1]) for i in range(v.size)])


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_smoothed_curve_does_not_lag_the_raw_one_on_digits(optimizer: str) -> None:
    # The old curve was an EMA (beta 0.98): its minimum came 4-9 steps after the raw curve's, dragging the
    # suggestions late. A zero-lag smoother puts it where the raw curve (a 5-point running median, so that one
    # noisy batch does not decide) has it, within two steps either way.
    r = _digits_sweep(optimizer).result
    finite = np.isfinite(np.asarray(r.losses, dtype=float))
    n = int(finite.sum())
    assert n > 50 and finite[:n].all()
    raw_min = int(np.argmin(_running_median(r.raw_losses[:n])))
    smooth_min = int(np.nanargmin(np.asarray(r.losses, dtype=float)))
    assert abs(smooth_min - raw_min) <= 2, (smooth_min, raw_min)
    # the suggestions are read off that curve: the minimum is the LR at its minimum, the steepest point before it
    assert r.minimum == pytest.approx(r.lrs[smooth_min])
    assert r.suggestion is not None and r.suggestion < r.minimum


def test_smoother_follows_a_straight_line_and_its_ends() -> None:
    # a local-linear fit reproduces a line exactly, ends included (a kernel average would bend both ends inwards,
    # an EMA would lag the whole line); its slope is per decade of LR
    lrs = list(np.logspace(-6, 0, 61))
    line = [3.0 - 0.4 * math.log10(lr) for lr in lrs]
    level, slope = smooth_losses(lrs, line)
    np.testing.assert_allclose(level, line, rtol=0, atol=1e-9)
    np.testing.assert_allclose(slope, -0.4, rtol=0, atol=1e-9)
    level, _ = smooth_losses(lrs, [*line[:40], math.nan, *line[41:]])
    assert np.isfinite(level[:40]).all() and np.isnan(level[40:]).all()


def test_steepest_point_is_the_middle_of_a_straight_descent() -> None:
    # a plateau, then a straight fall over two decades (1e-4..1e-2), then a rise: every point of the fall is as
    # steep as any other, so the steepest LR is its middle (1e-3), not wherever noise puts the single arg-max
    lrs = np.logspace(-7, 1, 81)
    x = np.log10(lrs)
    loss = np.where(x < -4, 2.0, np.where(x < -2, 2.0 - 0.5 * (x + 4), 1.0 + 2.0 * (x + 2)))
    rng = np.random.default_rng(0)
    noisy = loss + 0.01 * rng.standard_normal(loss.size)
    level, slope = smooth_losses(list(lrs), list(noisy))
    steep, _, minimum = _suggest(list(lrs), list(level), slope)
    assert steep is not None and minimum is not None
    assert 10**-3.4 < steep < 10**-2.6
    assert 10**-2.3 < minimum < 10**-1.7


def test_recommend_scales_the_steepest_lr_for_the_schedule_and_caps_it() -> None:
    r = LRFindResult(lrs=[], losses=[], raw_losses=[], suggestion=1e-3, valley=None, minimum=1e-2)
    assert r.recommend(1.0) == pytest.approx(1e-3)  # constant LR: the steepest point itself
    assert r.recommend(0.5) == pytest.approx(2e-3)  # warmup + cosine: the same mean step size
    assert r.recommend(0.05) == pytest.approx(1e-2)  # never past the loss minimum
    r.suggestion = None
    assert r.recommend(0.5) == pytest.approx(1e-3)  # no descent seen: the classic minimum / 10
    r.minimum = None
    assert r.recommend(0.5) is None
    assert LRSearch(r, schedule_factor=0.5).pick() == 3e-3  # then optim.lr's default


@pytest.mark.parametrize(("name", "extra", "expected"), [
    ("constant", {}, 1.0),
    ("reduce_on_plateau", {}, 1.0),
    ("cosine", {}, 0.5),
    ("warmup_cosine", {"warmup": 0.05}, 0.5),
    ("warmup_linear", {"warmup": 0.0}, 0.5),
    ("step", {"step_size": 10, "gamma": 0.1}, 0.55),  # 10 epochs at 1, 10 at 0.1
])
def test_schedule_mean_factor(name: str, extra: dict[str, Any], expected: float) -> None:
    factor = schedule_mean_factor(ScheduleConfig(name=name, **extra), steps_per_epoch=50, epochs=20)
    assert factor == pytest.approx(expected, abs=0.02)


def test_schedule_mean_factor_of_a_long_run_is_simulated_quickly() -> None:
    factor = schedule_mean_factor(ScheduleConfig(name="warmup_cosine", warmup=500), steps_per_epoch=10_000,
                                  epochs=100)
    assert factor == pytest.approx(0.5, abs=0.02)


def test_auto_lr_on_digits_trains_as_well_as_the_default(tmp_path: Path) -> None:
    # The issue: `optim.lr: auto` picked 5-12x below the default and reached 88.9% where 3e-3 reaches 97.5%.
    # Margin: 1.5 points (5 of the 360 test images). One seed's accuracy moves by about a point with the seed
    # here (seeds 0-2 at 3e-3: 97.5, 96.4, 97.2); over three seeds auto is within 0.5 points (bench/lr_auto.py).
    common = ["data.dataset=digits", "model.name=mlp", "train.epochs=15", *QUIET]
    default = gradwise.train(None, [*common, f"out={tmp_path / 'default'}"])
    auto = gradwise.train(None, [*common, "optim.lr=auto", f"out={tmp_path / 'auto'}"])
    lr = auto.config.optim.lr
    assert isinstance(lr, float) and 1e-3 < lr < 3e-2
    assert auto.summary["test"]["test_accuracy"] >= default.summary["test"]["test_accuracy"] - 0.015


def test_auto_lr_writes_its_plot_and_curve_into_the_run_directory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # anything written to the working directory would show up here
    run = gradwise.train(None, ["data.dataset=digits", "model.name=mlp", "train.epochs=1", "optim.lr=auto",
                                *QUIET, f"out={tmp_path / 'run'}"])
    assert (run.dir / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((run.dir / "lr_find.json").read_text())
    assert saved["pick"] == run.config.optim.lr == float(f"{run.config.optim.lr:.3g}")
    assert saved["schedule"] == "warmup_cosine" and 0.45 < saved["schedule_factor"] < 0.6  # ~0.5, 10 steps
    assert len(saved["lrs"]) == len(saved["raw_losses"]) > 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing in the working directory
    assert isinstance(run.extras["lr_find"], LRSearch)


def _search() -> LRSearch:
    lrs = [float(v) for v in np.logspace(-7, 1, 40)]
    raw = [2.0 - 1.5 / (1 + math.exp(-(i - 20) / 3)) for i in range(40)]
    level, slope = smooth_losses(lrs, raw)
    steep, valley, minimum = _suggest(lrs, list(level), slope)
    result = LRFindResult(lrs=lrs, losses=[float(v) for v in level], raw_losses=raw, suggestion=steep,
                          valley=valley, minimum=minimum)
    return LRSearch(result, schedule="warmup_cosine", schedule_factor=0.5)


def test_lr_find_command_output_is_run_like(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `gradwise lr-find` saves through save_lr_find: a runs/<time>-lr-find-<name> directory, not the working one
    monkeypatch.chdir(tmp_path)
    path = lr_find_dir(RunConfig(name="digits"))
    assert path.parent == Path("runs") and re.fullmatch(r"\d{8}-\d{6}-lr-find-digits", path.name)
    assert lr_find_dir(RunConfig(out=str(tmp_path / "mine"))) == tmp_path / "mine"
    plot = save_lr_find(_search(), RunConfig(name="digits"))
    assert plot.parent.parent == Path("runs") and plot.name == "lr_find.png" and plot.stat().st_size > 1000
    assert (plot.parent / "lr_find.json").exists() and not (tmp_path / "lr_find.png").exists()
    chosen = save_lr_find(_search(), RunConfig(name="digits"), plot=tmp_path / "plots" / "lr.png")
    assert chosen == tmp_path / "plots" / "lr.png" and (tmp_path / "plots" / "lr_find.json").exists()


def test_printouts_round_to_three_significant_digits(tmp_path: Path) -> None:
    r = LRFindResult(lrs=[1e-7, 1e-6], losses=[2.0, 1.0], raw_losses=[2.0, 1.0], suggestion=0.0012345678,
                     valley=3.33333333e-05, minimum=0.0098765432, extra={"seconds": 1.23456})
    text = repr(r)
    assert "steepest=0.00123" in text and "minimum=0.00988" in text and "valley=3.33e-05" in text
    assert "seconds=1.23" in text and "2.0, 1.0" not in text  # no full curves in the repr
    search = LRSearch(r, schedule="warmup_cosine", schedule_factor=0.5012345)
    lines = search.describe()
    assert lines[-1] == "suggested optim.lr=0.00246"
    numbers = re.findall(r"\d+\.\d+(?:e-?\d+)?", "\n".join(lines))
    assert all(len(n.split("e")[0].replace(".", "").lstrip("0")) <= 3 for n in numbers), numbers
    plot = search.save(tmp_path / "d")
    assert plot == tmp_path / "d" / "lr_find.png" and plot.stat().st_size > 1000
    saved = json.loads((tmp_path / "d" / "lr_find.json").read_text())
    assert saved["pick"] == 0.00246 and saved["steepest"] == 0.00123 and saved["schedule_factor"] == 0.501
