"""What the doctor's held-out sets share: offline data loaders, the run record, training one run through the public
API, the report and the command line. Each set (`doctor_holdout.py`, `doctor_blind.py`, `doctor_blind2.py`) keeps
its own runs, models and splits; this module only runs and scores them.

A run is trained with `gradwise.fit(model, train, val=..., progress="none", ...)` and the doctor on (its
default); its findings are read from `run.findings`, or from the `findings.jsonl` a run that raised left behind.
Healthy runs must raise no warning or error (info findings are fine); faulty runs must show every expected code
as a warning or an error.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# --------------------------------------------------------------------------------------------- data (offline only)


@functools.cache
def sklearn_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One of scikit-learn's bundled datasets as float32 features and its targets."""
    from sklearn import datasets

    loader = {"digits": datasets.load_digits, "wine": datasets.load_wine, "iris": datasets.load_iris,
              "breast_cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes}[name]
    x, y = loader(return_X_y=True)
    return x.astype(np.float32), y


@functools.cache
def mnist1d_data() -> tuple[np.ndarray, ...]:
    """MNIST-1D's predefined split (4000 train / 1000 test signals of length 40), generated locally."""
    from gradwise.data.datasets import load_mnist1d

    src = load_mnist1d({})
    return (np.asarray(src.x, np.float32), np.asarray(src.y, np.int64),
            np.asarray(src.test[0], np.float32), np.asarray(src.test[1], np.int64))


@functools.cache
def fashion_data() -> tuple[np.ndarray, ...]:
    """Fashion-MNIST (uint8 pixels 0-255, shape (N, 1, 28, 28)) from /usr/share/datasets/fashion-mnist."""
    from gradwise.data.datasets import load_fashion_mnist

    src = load_fashion_mnist({})
    return src.x, src.y, src.test[0], src.test[1]


def standardize(xt: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Per-feature standardization with the training split's statistics (what a careful user does)."""
    mu, sd = xt.mean(0), xt.std(0)
    sd = np.where(sd < 1e-6, 1.0, sd)
    return [((a - mu) / sd).astype(np.float32) for a in (xt, *others)]


def tensor(a: np.ndarray, long: bool = False) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.long if long else torch.float32)


def split(x: np.ndarray, y: np.ndarray, val_share: float, seed: int, scale: bool = False) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_val, y_val): a random split drawn from `seed`; `scale` standardizes the features with
    the training split's statistics."""
    order = np.random.RandomState(seed).permutation(len(x))
    x, y = x[order], y[order]
    n = int(round(len(x) * val_share))
    xt, yt, xv, yv = x[n:], y[n:], x[:n], y[:n]
    if scale:
        xt, xv = standardize(xt.astype(np.float32), xv.astype(np.float32))
    return xt, yt, xv, yv


def sk_table(name: str, seed: int, *, val_share: float = 0.25, scale: bool = True,
             pooled_pixels: bool = True) -> tuple[np.ndarray, ...]:
    """An sklearn table split by `seed`, standardized with the training statistics (numpy arrays). Digits' pixels
    get one mean/std over all of them with `pooled_pixels` (some pixels are ~constant in train), else per feature."""
    x, y = sklearn_data(name)
    xt, yt, xv, yv = split(x, y, val_share, seed)
    if scale and name == "digits" and pooled_pixels:
        mu, sd = xt.mean(), xt.std()
        xt, xv = (xt - mu) / sd, (xv - mu) / sd
    elif scale:
        xt, xv = standardize(xt, xv)
    return xt, yt, xv, yv


def mnist1d_split(n_train: int | None = None, n_val: int = 1000, scale: bool = True) -> tuple[np.ndarray, ...]:
    """MNIST-1D's own train/test split (first `n_train` / `n_val` rows), standardized per time step with the
    training statistics unless `scale` is off (numpy arrays)."""
    x, y, xv, yv = mnist1d_data()
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    xv, yv = xv[:n_val], yv[:n_val]
    if scale:
        x, xv = standardize(x, xv)
    return x, y, xv, yv


# --------------------------------------------------------------------------------------------- models


def stack(n_in: int, n_out: int, widths: tuple[int, ...], act: Callable[[], nn.Module] = nn.ReLU,
          final: nn.Module | None = None, dropout: float = 0.0, norm: Callable[[int], nn.Module] | None = None
          ) -> nn.Sequential:
    """Flatten, then Linear layers of the given widths, each followed by [norm], the activation and [dropout]."""
    layers: list[nn.Module] = [nn.Flatten()]
    d = n_in
    for w in widths:
        layers.append(nn.Linear(d, w))
        if norm is not None:
            layers.append(norm(w))
        layers.append(act())
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = w
    layers.append(nn.Linear(d, n_out))
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------- runs


@dataclass
class HeldOutRun:
    name: str
    data: str
    arch: str
    optim: str
    fault: str  # what the user did wrong ("" for a healthy run)
    expect: tuple[str, ...]  # codes a careful expert would expect (as warning or error); () for healthy
    build: Callable[[], dict[str, Any]]  # model, train, val, and the other gradwise.fit keywords
    note: str = ""  # how the label was checked / decided

    @property
    def healthy(self) -> bool:
        return not self.expect


def registrar(runs: list[HeldOutRun]) -> Callable[..., Callable[[Callable[[], dict[str, Any]]], Any]]:
    """A decorator factory that adds a run (its build function decorated) to `runs`."""
    def register(name: str, data: str, arch: str, optim: str, fault: str = "", expect: tuple[str, ...] = (),
                 note: str = "") -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
        def wrap(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
            runs.append(HeldOutRun(name, data, arch, optim, fault, expect, fn, note))
            return fn
        return wrap
    return register


class Scored:
    """What every result shares, the case suite's and the held-out sets': the findings (code -> most severe
    severity) scored against the codes the run should produce (warnings and errors count, info does not)."""

    expect: tuple[str, ...]
    found: dict[str, str]

    @property
    def alarms(self) -> dict[str, str]:
        return {c: s for c, s in self.found.items() if s in ("warning", "error")}

    @property
    def missing(self) -> list[str]:
        return [c for c in self.expect if c not in self.alarms]

    @property
    def unexpected(self) -> list[str]:
        return [c for c in self.alarms if c not in self.expect]


@dataclass
class Result(Scored):
    name: str
    expect: tuple[str, ...]
    found: dict[str, str]  # code -> most severe severity
    status: str
    seconds: float
    epochs: int
    metrics: dict[str, Any] = field(default_factory=dict)
    dir: str = ""
    run: Any = field(default=None, repr=False)  # the gradwise Run (None when the fit raised)


class HeldOutSet:
    """One held-out set: its runs and the seed every split, initialization and batch order of them is drawn from
    (the set's own default, or `--seed`). What each set file used to repeat -- a SEED global and its setter, the run
    list and its registrar, the command line -- lives here once:

        SET = harness.HeldOutSet(89)
        blind = SET.register
        @blind("run_name", "data", "arch", "optim", fault="...", expect=("code",))
        def _() -> dict[str, Any]:
            ... harness.split(x, y, 0.25, SET.seed) ...
        if __name__ == "__main__":
            sys.exit(SET.main(None, __doc__ or ""))
    """

    def __init__(self, seed: int) -> None:
        self.default = self.seed = seed
        self.runs: list[HeldOutRun] = []
        self.register = registrar(self.runs)

    def use_seed(self, seed: int) -> None:
        """Re-draw every split, initialization and batch order (a check that the verdicts do not hinge on one draw)."""
        self.seed = seed

    def main(self, argv: list[str] | None, doc: str) -> int:
        return main(argv, doc=doc, runs=self.runs, seed=self.default, use_seed=self.use_seed)


def execute(r: HeldOutRun, out: str | Path | None = None, doctor: bool = True) -> Result:
    """Train one run through gradwise.fit (doctor on, its defaults) and collect the findings."""
    import gradwise

    torch.set_num_threads(1)
    kw = r.build()
    model, train = kw.pop("model"), kw.pop("train")
    kw.setdefault("progress", "none")
    path = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"heldout-{r.name}-"))
    t0 = time.perf_counter()
    try:
        run = gradwise.fit(model, train, out=path, doctor=doctor, overwrite=True, **kw)
        findings = [(f.code, f.severity) for f in run.findings]
        h, status = run.history, run.status
        facts = (run.summary.get("doctor") or {}).get("facts") or {}
    except Exception as e:  # a run that stops with an error: read what it left in its directory
        run, status, facts = None, f"raised {type(e).__name__}", {}
        findings = [(d["code"], d["severity"]) for d in _jsonl(path / "findings.jsonl")]
        h = _jsonl(path / "metrics.jsonl")
    seconds = time.perf_counter() - t0
    found: dict[str, str] = {}
    rank = {"info": 0, "warning": 1, "error": 2}
    for code, severity in findings:
        if code not in found or rank[severity] > rank[found[code]]:
            found[code] = severity
    vals = [x.get("val_loss") for x in h if isinstance(x.get("val_loss"), float)]
    metrics: dict[str, Any] = {"train_loss": h[-1].get("train_loss") if h else None,
                               "best_val_loss": min(vals) if vals else None,
                               "know_nothing": facts.get("baseline") or facts.get("zero_loss")}
    for key in ("val_accuracy", "val_r2"):
        got = [x[key] for x in h if isinstance(x.get(key), float)]
        if got:
            metrics[f"best_{key}"] = max(got)
    return Result(r.name, r.expect, found, status, seconds, len(h), metrics, str(path), run)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def report(results: list[Result], runs: dict[str, HeldOutRun]) -> dict[str, Any]:
    width = max([len(r.name) for r in results] + [20])
    arch = max([len(runs[r.name].arch) for r in results] + [4])
    print(f"{'':5s}{'run':{width}s} {'arch':{arch}s} expected -> found (severity)")
    for res in results:
        r = runs[res.name]
        mark = ("FA  " if res.alarms else "ok  ") if r.healthy else ("MISS" if res.missing else "hit ")
        exp = ",".join(res.expect) or "(healthy)"
        found = ", ".join(f"{c}:{s}" for c, s in res.found.items()) or "-"
        m = res.metrics
        acc = m.get("best_val_accuracy", m.get("best_val_r2"))
        print(f"{mark} {res.name:{width}s} {r.arch:{arch}s} {exp} -> {found}")
        print(f"{'':5s}{'':{width}s} {res.status}, {res.epochs} epochs, {res.seconds:.1f}s, train_loss "
              f"{_fmt(m.get('train_loss'))}, best val_loss {_fmt(m.get('best_val_loss'))}"
              f"{'' if acc is None else f', best val acc/r2 {_fmt(acc)}'}, know-nothing {_fmt(m.get('know_nothing'))}")
    faulty = [x for x in results if runs[x.name].expect]
    healthy = [x for x in results if not runs[x.name].expect]
    expected = sum(len(x.expect) for x in faulty)
    hit = sum(len(x.expect) - len(x.missing) for x in faulty)
    false_alarms = {x.name: x.alarms for x in healthy if x.alarms}
    unexpected = {x.name: {c: x.found[c] for c in x.unexpected} for x in faulty if x.unexpected}
    misses = {x.name: x.missing for x in faulty if x.missing}
    print()
    print(f"faulty runs: {len(faulty)}, healthy runs: {len(healthy)}")
    if expected:
        print(f"recall over expected codes: {hit}/{expected} = {hit / expected:.0%}"
              + (f"; missed: {misses}" if misses else ""))
    print(f"false alarms (warning/error on a healthy run): {len(false_alarms)}/{len(healthy)} {false_alarms or ''}")
    print(f"unexpected warnings/errors on faulty runs (not counted): {unexpected or 'none'}")
    print(f"total training time {sum(x.seconds for x in results):.0f}s")
    return {"recall": hit / max(expected, 1), "expected": expected, "hit": hit, "misses": misses,
            "false_alarms": false_alarms, "unexpected": unexpected}


def main(argv: list[str] | None, *, doc: str, runs: list[HeldOutRun], seed: int,
         use_seed: Callable[[int], None] | None = None) -> int:
    """The command line every held-out set shares: --only, --keep, --list, --seed."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated run names (or substrings of them)")
    ap.add_argument("--keep", default="", help="write the run directories here instead of a temporary folder")
    ap.add_argument("--list", action="store_true", help="list the runs and exit")
    ap.add_argument("--seed", type=int, default=seed, help=f"re-draw splits, inits, batch orders ({seed}: as written)")
    args = ap.parse_args(argv)
    if use_seed is not None:
        use_seed(args.seed)
    torch.set_num_threads(1)
    by_name = {r.name: r for r in runs}
    if args.list:
        for r in runs:
            print(f"{r.name:40s} {'healthy' if r.healthy else ','.join(r.expect):40s} {r.fault}"
                  + (f"  [{r.note}]" if r.note else ""))
        return 0
    wanted = [w for w in args.only.split(",") if w]
    chosen = [r for r in runs if not wanted or any(w == r.name or w in r.name for w in wanted)]
    if not chosen:
        print(f"no run matches {args.only!r}; --list shows them", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="heldout-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        results = [execute(r, base / r.name) for r in chosen]
        s = report(results, by_name)
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    return 0 if not s["misses"] and not s["false_alarms"] else 1
