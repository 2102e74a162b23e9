"""Revisions after the blind sets' first contact (issue 15): each rule on synthetic facts with its thresholds' edges
on both sides, and the fault it was revised for on real data through `gradwise.fit`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_diabetes, load_digits, load_wine
from sklearn.model_selection import train_test_split
from torch import nn

import gradwise
from gradwise.doctor import checks
from gradwise.doctor.findings import Finding
from gradwise.doctor.preflight_facts import PreflightFacts, Splits
from gradwise.doctor.thresholds import configured

G = torch.Generator().manual_seed(15)


def _x(n: int, d: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=G) * scale + shift


def _facts(x: torch.Tensor, val: torch.Tensor, **kw: Any) -> PreflightFacts:
    kw.setdefault("loss_kind", "ce")
    y = torch.arange(len(x)) % 3
    return PreflightFacts(x=x, y=y, splits=Splits.of(val=(val, torch.arange(len(val)) % 3)), **kw)


def _run(name: str, f: PreflightFacts, **thresholds: float) -> list[Finding]:
    got = checks.REGISTRY[name]().check(f, configured(thresholds))
    return [] if got is None else [got] if isinstance(got, Finding) else list(got)


# ------------------------------------------------------------------------------------------------ split_scale


def test_split_scale_sees_a_large_shift_in_a_few_rows() -> None:
    """Raw units against standardized training columns show in 10 rows (the old fixed minimum was 50)."""
    x = _x(300, 8)
    raw = _x(10, 8, scale=300.0, shift=700.0)
    found = _run("split_scale", _facts(x, raw))
    assert [(f.code, f.severity) for f in found] == [("train_eval_mismatch", "warning")]
    assert found[0].evidence["split"] == "val"


def _exactly(n: int, d: int, std: float) -> torch.Tensor:
    """n rows whose every column has mean 0 and sample std `std` exactly (no luck of the draw in the edges)."""
    v = _x(n, d)
    return (v - v.mean(0)) / v.std(0) * std


def test_split_scale_significance_edge() -> None:
    """A 6x wider spread is 3.6 standard errors of the log spread in 3 rows (sqrt((3 - 1)/4 · (1/2 + 1/1999)) = 0.5)
    and 15.7 in 40: the rows needed follow from the size of the difference; split_z sets the edge."""
    x = _exactly(2000, 8, 1.0)
    few, many = _exactly(3, 8, 6.0), _exactly(40, 8, 6.0)
    assert _run("split_scale", _facts(x, few)) == []
    assert len(_run("split_scale", _facts(x, few), split_z=3.4)) == 1
    assert _run("split_scale", _facts(x, few), split_z=3.8) == []
    assert len(_run("split_scale", _facts(x, many), split_z=15.0)) == 1
    assert _run("split_scale", _facts(x, many), split_z=16.5) == []


def test_split_scale_shift_edge() -> None:
    """Every column shifted 2 training standard deviations: off with split_shift below 2, not above."""
    x = _x(1000, 6)
    val = _x(200, 6, shift=2.0)
    assert len(_run("split_scale", _facts(x, val), split_shift=1.8)) == 1
    assert _run("split_scale", _facts(x, val), split_shift=2.2) == []


def test_split_scale_quiet_on_small_honest_splits() -> None:
    """Tiny validation splits drawn like the training rows (normal and heavy-tailed columns) are never called off."""
    x = torch.cat([_x(500, 4), torch.distributions.StudentT(2.5).sample((500, 4))], dim=1)
    for n in (3, 5, 10, 20):
        for _ in range(20):
            val = torch.cat([_x(n, 4), torch.distributions.StudentT(2.5).sample((n, 4))], dim=1)
            assert _run("split_scale", _facts(x, val)) == []


# ------------------------------------------------------------------------------------------------ label_column


def _leak(n: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A regression table whose column 2 is the target plus a little noise (a value recorded after the outcome)."""
    x, y = _x(n, 5), _x(n, 1)[:, 0]
    x[:, 2] = y + noise * _x(n, 1)[:, 0]
    return x, y


def test_label_column_regression_on_a_small_validation_split() -> None:
    """40 validation rows (the check used to need 100): the copy of the target is named; the Fisher-z margin by
    which the 40 rows' correlation clears label_column_r is the edge, on both sides."""
    x, y = _leak(400, 0.01)
    xv, yv = _leak(40, 0.01)
    f = PreflightFacts(x=x, y=y, loss_kind="mse", splits=Splits.of(val=(xv, yv)))
    found = _run("label_column", f)
    assert [(g.code, g.severity) for g in found] == [("data_leakage", "info")] and found[0].evidence["column"] == 2
    r = abs(float(np.corrcoef(xv[:, 2].numpy(), yv.numpy())[0, 1]))
    margin = (np.arctanh(r) - np.arctanh(0.995)) * np.sqrt(len(xv) - 3)  # standard errors above the bar
    assert margin > 5
    assert len(_run("label_column", f, label_column_z=margin - 0.5)) == 1
    assert _run("label_column", f, label_column_z=margin + 0.5) == []
    tiny = PreflightFacts(x=x, y=y, loss_kind="mse", splits=Splits.of(val=_leak(8, 0.01)))
    assert _run("label_column", tiny) == []  # 8 rows: too few for a correlation's standard error to mean much


def test_label_column_regression_noise_edge() -> None:
    """A column correlating ~0.99 with the target (noise 0.14 of its std) stays below label_column_r."""
    x, y = _leak(2000, 0.14)
    xv, yv = _leak(200, 0.14)
    assert _run("label_column", PreflightFacts(x=x, y=y, loss_kind="mse", splits=Splits.of(val=(xv, yv)))) == []


# ------------------------------------------------------------------------------------------------ near_copies


def _copies(n: int, d: int, copies: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`copies` noisy copies of each of n points, pooled and then split at random 3:1 (augmentation before the
    split)."""
    base = _x(n, d)
    pool = torch.cat([base + noise * _x(n, d) for _ in range(copies)])
    order = torch.randperm(len(pool), generator=G)
    return pool[order[len(pool) // 4:]], pool[order[: len(pool) // 4]]


def test_near_copies_by_the_datas_own_dimension() -> None:
    """Copies at ~0.4x the distance of the 10th neighbour (which the old fixed bar of 0.2x missed) are near-copies
    in 8 dimensions; near_copy_p and near_copy_share are the edges."""
    train, val = _copies(500, 8, 4, 0.15)
    f = _facts(train, val)
    found = _run("near_copies", f)
    assert [(g.code, g.severity) for g in found] == [("data_leakage", "warning")]
    ev = found[0].evidence
    assert ev["median_nearest_to_10th"] > 0.2 and 5 < ev["intrinsic_dimension"] < 11
    assert _run("near_copies", f, near_copy_share=ev["share_near_copies"] + 0.01) == []
    assert _run("near_copies", f, near_copy_p=1e-12) == []  # no row is that unlikely a neighbour


def test_near_copies_quiet_on_a_low_dimensional_honest_split() -> None:
    """Honest rows on a 2-D plane inside 8 columns sit close to their nearest neighbour by geometry alone (ratio
    median ~0.3): their own dimension says that is normal."""
    z = _x(2000, 2)
    x = z @ _x(2, 8)
    f = _facts(x[:1600], x[1600:])
    assert _run("near_copies", f) == []
    assert _run("near_copies", f, near_copy_p=0.5, near_copy_share=0.3) != []  # the test can fire here at all


# ------------------------------------------------------------------------------------------------ end to end


def _wine_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 3))


def test_fit_val_left_unscaled_on_wine_is_a_train_eval_mismatch(tmp_path: Path) -> None:
    """wine, the scaler fitted and applied to the training rows, 44 validation rows passed raw (blind7's
    val_left_unscaled): a train/eval mismatch, not a label problem. The same split scaled alike stays quiet."""
    x, y = load_wine(return_X_y=True)
    xt, xv, yt, yv = train_test_split(x.astype(np.float32), y, test_size=44, random_state=0, stratify=y)
    mean, std = xt.mean(0), xt.std(0)
    common = dict(loss="cross_entropy", epochs=2, progress="none")
    run = gradwise.fit(_wine_mlp(), ((xt - mean) / std, yt), val=(xv, yv), out=tmp_path / "raw", **common)
    assert ("train_eval_mismatch", "warning") in {(f.code, f.severity) for f in run.findings}
    ok = gradwise.fit(_wine_mlp(), ((xt - mean) / std, yt), val=((xv - mean) / std, yv), out=tmp_path / "ok",
                      **common)
    assert "train_eval_mismatch" not in {f.code for f in ok.findings}


def test_fit_outcome_column_on_diabetes_is_named(tmp_path: Path) -> None:
    """diabetes (88 validation rows) plus a column that is the target with 1% noise (blind7's
    outcome_column_in_features): the doctor names the column (info: a lag of the target looks the same)."""
    x, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(0)
    x = np.column_stack([x, y + 0.01 * y.std() * rng.standard_normal(len(y))]).astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    xt, xv, yt, yv = train_test_split(x, y, test_size=88, random_state=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(11, 32), nn.ReLU(), nn.Linear(32, 1), nn.Flatten(0))
    run = gradwise.fit(model, (xt, yt), val=(xv, yv), loss="mse", epochs=2, progress="none", out=tmp_path / "r")
    leak = [f for f in run.findings if f.code == "data_leakage"]
    assert leak and leak[0].evidence["column"] == 10


def test_fit_digits_augmented_before_the_split_is_leakage(tmp_path: Path) -> None:
    """digits, 4 noisy copies of each image (noise 0.5 of 16 levels, +-10% brightness), then a random split
    (blind7's augmented_before_split): data_leakage. The honest digits split stays quiet."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(7)
    pool = np.concatenate([x * rng.uniform(0.9, 1.1, (len(x), 1)) + rng.normal(0, 0.5, x.shape) for _ in range(4)])
    labels = np.tile(y, 4)
    order = rng.permutation(len(pool))
    tr, va = order[len(pool) // 4:], order[: len(pool) // 4]
    mu, sd = pool[tr].mean(), pool[tr].std()
    pool = ((pool - mu) / sd).astype(np.float32)

    def fit(xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray, name: str) -> set[tuple[str, str]]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        run = gradwise.fit(model, (xt, yt), val=(xv, yv), loss="cross_entropy", epochs=1, progress="none",
                           out=tmp_path / name)
        return {(f.code, f.severity) for f in run.findings}

    assert ("data_leakage", "warning") in fit(pool[tr], labels[tr], pool[va], labels[va], "augmented")
    xt, xv, yt, yv = train_test_split(((x - x.mean()) / x.std()).astype(np.float32), y, test_size=0.25,
                                      random_state=0)
    assert "data_leakage" not in {c for c, _ in fit(xt, yt, xv, yv, "honest")}


# ------------------------------------------------------------------------------------------------ explained by


def _init_root(**evidence: Any) -> Finding:
    return Finding("bad_initialization", "warning", "init", evidence, epoch=0, step=0)


def test_a_too_large_init_explains_memorization() -> None:
    """A too-large init (a layer above init_gain_high, or an initial loss >= init_loss_ratio x the all-zero
    output's) explains overfitting and label_problem; a too-small or constant init does not."""
    from gradwise.doctor.verdict import explained

    memorized = [Finding("label_problem", "warning", "labels", {}, epoch=5, step=100),
                 Finding("overfitting", "warning", "gap", {}, epoch=6, step=120)]
    large = _init_root(ratio=1.2, threshold=3.0, layers=[{"layer": "0", "issue": "std·√fan_in = 8", "std": 1.0}])
    loud = _init_root(ratio=3.0, threshold=3.0)
    for root in (large, loud):
        out = explained([root, *memorized])
        assert [(f.code, f.severity, f.evidence.get("explained_by")) for f in out[1:]] == \
            [("label_problem", "info", "bad_initialization"), ("overfitting", "info", "bad_initialization")]
    quiet = _init_root(ratio=2.9, threshold=3.0)  # just below the loss edge
    small = _init_root(ratio=1.0, threshold=3.0, small_init={"small": 3, "hidden": 3})
    constant = _init_root(ratio=1.0, threshold=3.0, layers=[{"layer": "0", "issue": "constant", "std": 0.0,
                                                             "units": 8, "distinct_rows": 1}])
    for root in (quiet, small, constant):
        out = explained([root, *memorized])
        assert out[1].severity == "warning"  # label_problem stands, and stays overfitting's root as before
        assert out[2].evidence.get("explained_by") == "label_problem"


def test_vanishing_gradients_explain_small_steps() -> None:
    """lr_too_low beside vanishing_gradients (a 10-layer sigmoid stack) is the vanishing gradients' doing: info, with
    their fix; alone it stays a warning."""
    from gradwise.doctor.verdict import explained

    low = Finding("lr_too_low", "warning", "small steps", {}, epoch=1, step=8)
    vanish = Finding("vanishing_gradients", "warning", "first/last 1e-5", {}, fixes=["model.activation=relu"], epoch=1,
                     step=8)
    out = explained([vanish, low])
    assert (out[1].severity, out[1].evidence.get("explained_by")) == ("info", "vanishing_gradients")
    assert out[1].fixes == vanish.fixes
    assert explained([low])[0].severity == "warning"
