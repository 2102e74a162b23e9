"""One harness for the doctor's held-out and blind sets: a set is a list of data-like cases, this module builds,
trains, scores and reports them, and gives every set the same command line (`python bench/doctor/run.py SET`).

A case (`Case`) names what a run is made of -- a data builder and its arguments (`doctor.data`), a model builder
and its arguments (`doctor.models`), the `gradwise.fit` keywords or the `gradwise train` config overrides, the
fault, the codes it should produce -- and, when the fault is not a keyword, the small function that commits it
(`corrupt`: shuffle the labels, re-initialize the weights, hand an optimizer a stale copy ...). `CaseSet` turns
the list into runs drawn from the set's seed: data first, then torch seeded, the model built, the corruption
applied, a `TorchOptim` placeholder resolved against the final model's parameters.

A run is trained with `gradwise.fit(model, train, val=..., progress="none", ...)` (or `gradwise.train`) and the
doctor on (its default); its findings are read from `run.findings`, or from the `findings.jsonl` a run that raised
(or, with `isolate`, a run trained in its own process) left behind. Healthy runs must raise no warning or error
(info findings are fine); faulty runs must show every expected code as a warning or an error, or, for a set that
lists acceptable codes (`any_of`), one of them.

The older decorator API (`HeldOutSet`, `registrar`, `HeldOutRun` with a `build` function) still works: a set may
register a run whose making does not fit a `Case`.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import subprocess
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

from doctor import data as D
from doctor import models as M
from doctor.data import fashion_data, mnist1d_data, mnist1d_split, sk_table, sklearn_data, split, standardize, tensor
from doctor.models import stack
from gradwise.train.rundir import read_jsonl  # skips a line a crashed run cut short

__all__ = ["CE", "D", "M", "P", "Built", "Case", "CaseSet", "HeldOutRun", "HeldOutSet", "Result", "TorchOptim",
           "execute", "fashion_data", "main", "mnist1d_data", "mnist1d_split", "registrar", "report", "sk_table",
           "sklearn_data", "split", "stack", "standardize", "tensor"]

P = functools.partial  # what a set writes its builders with: P(D.sk_table, "wine"), P(M.stack, 13, 3, (64,))
CE = "cross_entropy"
RUN_PY = Path(__file__).resolve().parent / "run.py"
FILE = "<data file>"  # in a config case's overrides: the path of the file its data builder wrote


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
    any_of: bool = False  # `expect` lists acceptable codes: one of them at warning/error is a hit

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
    any_of: bool = False

    @property
    def alarms(self) -> dict[str, str]:
        return {c: s for c, s in self.found.items() if s in ("warning", "error")}

    @property
    def missing(self) -> list[str]:
        if self.any_of:
            return [] if any(c in self.alarms for c in self.expect) else list(self.expect)
        return [c for c in self.expect if c not in self.alarms]

    @property
    def unexpected(self) -> list[str]:
        return [c for c in self.alarms if c not in self.expect]

    @property
    def n_expected(self) -> int:
        return min(len(self.expect), 1) if self.any_of else len(self.expect)

    @property
    def n_hit(self) -> int:
        return self.n_expected - (bool(self.missing) if self.any_of else len(self.missing))


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
    run: Any = field(default=None, repr=False)  # the gradwise Run (None when the fit raised or ran elsewhere)
    any_of: bool = False


# --------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class TorchOptim:
    """`optimizer=TorchOptim("SGD", lr=0.3)` in a case's fit keywords: the user's own torch.optim instance, built on
    the final model's parameters when the run is made."""

    name: str
    kw: dict[str, Any]

    def __init__(self, name: str, **kw: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "kw", kw)

    def __call__(self, model: nn.Module) -> torch.optim.Optimizer:
        return getattr(torch.optim, self.name)(model.parameters(), **self.kw)


@dataclass
class Built:
    """A case being made: its split, model and fit keywords, which its corruption may change in place."""

    xt: Any
    yt: Any
    xv: Any
    yv: Any
    model: nn.Module | None
    fit: dict[str, Any]
    seed: int
    test: tuple[Any, Any] | None = None


@dataclass(frozen=True)
class Case:
    """One run of a set, as data. `load` is a data builder (a partial of a `doctor.data` function; it gets the
    set's seed as `seed=` when it takes one) returning (xt, yt, xv, yv[, x_test, y_test]); `model` a model builder
    (a partial, called after torch is seeded); `fit` the gradwise.fit keywords. A `gradwise train` case gives
    `config` (overrides) instead, and `load` writes the data file (`load(work, seed=)`) whose path replaces FILE
    in them. `corrupt(b)` commits a fault that is not a keyword; `init` offsets the torch seed of the model."""

    name: str
    data: str
    arch: str
    optim: str
    load: Callable[..., Any] | None = None
    model: Callable[[], nn.Module] | None = None
    fit: dict[str, Any] = field(default_factory=dict)
    fault: str = ""
    expect: tuple[str, ...] = ()
    note: str = ""
    init: int = 0
    corrupt: Callable[[Built], None] | None = None
    config: dict[str, Any] | None = None


def _call_seeded(fn: Callable[..., Any], seed: int, *args: Any) -> Any:
    """fn(*args, seed=seed) when fn takes a seed the case did not fix, else fn(*args)."""
    bound = getattr(fn, "keywords", {}) or {}
    takes = "seed" in inspect.signature(fn).parameters
    return fn(*args, seed=seed) if takes and "seed" not in bound else fn(*args)


class HeldOutSet:
    """One held-out set: its runs and the seed every split, initialization and batch order of them is drawn from
    (the set's own default, or `--seed`)."""

    def __init__(self, seed: int) -> None:
        self.default = self.seed = seed
        self.runs: list[HeldOutRun] = []
        self.facts: dict[str, str] = {}  # run name -> what its build measured about its data (printed beside it)
        self.register = registrar(self.runs)

    @property
    def by_name(self) -> dict[str, HeldOutRun]:
        return {r.name: r for r in self.runs}

    def use_seed(self, seed: int) -> None:
        """Re-draw every split, initialization and batch order (a check that the verdicts do not hinge on one draw)."""
        self.seed = seed

    def execute(self, r: HeldOutRun, out: str | Path | None = None, doctor: bool = True) -> Result:
        return execute(r, out, doctor)

    def main(self, argv: list[str] | None, doc: str) -> int:
        return main(argv, doc=doc, runs=self.runs, seed=self.default, use_seed=self.use_seed, held=self)


class CaseSet(HeldOutSet):
    """A set written as a list of `Case`s. `torch_seed(seed, init)` is the seed torch gets before a model is built;
    `tensors` hands fit torch tensors (float32; integer labels as int64) instead of the numpy arrays, converted
    "before" the corruption (which then works on tensors) or "after" it (None: numpy arrays); `fit_defaults`
    are keywords every fit case gets; `isolate` trains each run in its own process (`timeout_s` each), so one crash
    or hang costs one row. `facts` (case name -> a line) is what a set's builders measured about their data, printed
    beside the run."""

    def __init__(self, name: str, seed: int, cases: list[Case], *, doc: str = "", any_of: bool = False,
                 torch_seed: Callable[[int, int], int] = lambda seed, init: seed * 100 + init,
                 tensors: str | None = "after",
                 fit_defaults: dict[str, Any] | None = None, config_defaults: dict[str, Any] | None = None,
                 isolate: bool = False, timeout_s: float = 180.0, facts: dict[str, str] | None = None) -> None:
        super().__init__(seed)
        self.facts = facts if facts is not None else {}
        self.name, self.doc, self.cases = name, doc, {c.name: c for c in cases}
        self.torch_seed, self.tensors, self.isolate, self.timeout_s = torch_seed, tensors, isolate, timeout_s
        self.fit_defaults, self.config_defaults = fit_defaults or {}, config_defaults or {}
        for c in cases:
            self.runs.append(HeldOutRun(c.name, c.data, c.arch, c.optim, c.fault, c.expect,
                                        lambda c=c: self.build(c), c.note, any_of))

    def build(self, c: Case) -> dict[str, Any]:
        """The keywords of one case's run at the set's current seed."""
        seed = self.seed
        if c.config is not None:
            return {"overrides": {**c.config, **self.config_defaults, "seed": seed, "name": c.name},
                    "write": None if c.load is None else lambda work: _call_seeded(c.load, seed, work)}
        d = list(_call_seeded(c.load, seed)) if c.load is not None else [None] * 4
        torch.manual_seed(self.torch_seed(seed, c.init))
        model = c.model() if c.model is not None else None
        if self.tensors == "before":
            d = [_as_tensor(a) for a in d]
        b = Built(*d[:4], model=model, fit=dict(c.fit), seed=seed, test=tuple(d[4:6]) if len(d) > 4 else None)
        if c.corrupt is not None:
            c.corrupt(b)
        fit = b.fit
        if isinstance(fit.get("optimizer"), TorchOptim):
            fit["optimizer"] = fit["optimizer"](b.model)
        arrays = {"train": (b.xt, b.yt), "val": (b.xv, b.yv)} | ({"test": b.test} if b.test else {})
        if self.tensors == "after":
            arrays = {k: tuple(_as_tensor(a) for a in v) for k, v in arrays.items()}
        return {**arrays, "seed": seed, **self.fit_defaults, **fit, "model": b.model}

    def execute(self, r: HeldOutRun, out: str | Path | None = None, doctor: bool = True) -> Result:
        if not self.isolate:
            return execute(r, out, doctor)
        path = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"heldout-{r.name}-"))
        cmd = [sys.executable, str(RUN_PY), self.name, "--case", r.name, "--out", str(path), "--seed", str(self.seed)]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            p for p in (str(RUN_PY.parents[1]), os.environ.get("PYTHONPATH", "")) if p))
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(path.parent / f"{path.name}.log", "w") as fh:
            try:
                rc: int | None = subprocess.run(cmd + ([] if doctor else ["--no-doctor"]), stdout=fh,
                                                stderr=subprocess.STDOUT, env=env, timeout=self.timeout_s).returncode
            except subprocess.TimeoutExpired:
                rc = None
        try:
            status = str(json.loads((path / "summary.json").read_text()).get("status", "?"))
        except (OSError, json.JSONDecodeError):
            status = "timeout" if rc is None else "refused" if rc == 2 else f"crashed rc={rc}"
        return collect(r, path, status, time.perf_counter() - t0)

    def main(self, argv: list[str] | None, doc: str | None = None) -> int:
        return super().main(argv, doc or self.doc)


def _as_tensor(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return tensor(a, long=np.issubdtype(a.dtype, np.integer))
    return a


# --------------------------------------------------------------------------------------------- training, scoring


def _train(kw: dict[str, Any], path: Path, doctor: bool) -> Any:
    """One run through the public API: gradwise.fit, or gradwise.train for a config case."""
    import gradwise

    if "overrides" in kw:
        overrides = dict(kw["overrides"])
        if kw.get("write") is not None:
            work = path.parent / f"{path.name}-data"
            work.mkdir(parents=True, exist_ok=True)
            file = str(kw["write"](work))
            overrides = {k: file if v == FILE else v for k, v in overrides.items()}
        overrides.update({"out": str(path), "doctor.enabled": doctor})
        return gradwise.train(None, overrides)
    model, train = kw.pop("model"), kw.pop("train")
    kw.setdefault("progress", "none")
    return gradwise.fit(model, train, out=path, doctor=doctor, overwrite=True, **kw)


def execute(r: HeldOutRun, out: str | Path | None = None, doctor: bool = True) -> Result:
    """Train one run through gradwise.fit (doctor on, its defaults) and collect the findings."""
    torch.set_num_threads(1)
    kw = r.build()
    path = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"heldout-{r.name}-"))
    t0 = time.perf_counter()
    try:
        run = _train(kw, path, doctor)
    except Exception as e:  # a run that stops with an error: read what it left in its directory
        return collect(r, path, f"raised {type(e).__name__}", time.perf_counter() - t0)
    return collect(r, path, run.status, time.perf_counter() - t0, run)


def collect(r: HeldOutRun, path: Path, status: str, seconds: float, run: Any = None) -> Result:
    """Score a run: from the Run object when there is one, else from what it left in its directory."""
    if run is not None:
        findings = [(f.code, f.severity) for f in run.findings]
        h = run.history
        facts = (run.summary.get("doctor") or {}).get("facts") or {}
    else:
        findings = [(d["code"], d["severity"]) for d in read_jsonl(path / "findings.jsonl")]
        h = read_jsonl(path / "metrics.jsonl")
        facts = {}
    found: dict[str, str] = {}
    rank = {"info": 0, "warning": 1, "error": 2}
    for code, severity in findings:
        severity = str(severity).lower()
        if code not in found or rank.get(severity, 0) > rank.get(found[code], 0):
            found[code] = severity
    vals = [x.get("val_loss") for x in h if isinstance(x.get("val_loss"), float)]
    metrics: dict[str, Any] = {"train_loss": h[-1].get("train_loss") if h else None,
                               "best_val_loss": min(vals) if vals else None,
                               "last_val_loss": vals[-1] if vals else None,
                               "know_nothing": facts.get("baseline") or facts.get("zero_loss")}
    for key in ("val_accuracy", "val_r2", "val_balanced_accuracy"):
        got = [x[key] for x in h if isinstance(x.get(key), float)]
        if got:
            metrics[f"best_{key}"] = max(got)
    return Result(r.name, r.expect, found, status, seconds, len(h), metrics, str(path), run, r.any_of)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def report(results: list[Result], runs: dict[str, HeldOutRun], facts: dict[str, str] | None = None,
           doctor: bool = True) -> dict[str, Any]:
    """One row a run (mark, codes found, how it trained, [what its build measured]), then the scores; with the
    doctor off (`doctor=False`) nothing is scored: the rows only show whether each fault harms its run."""
    width = max([len(r.name) for r in results] + [20])
    arch = max([len(runs[r.name].arch) for r in results] + [4])
    any_of = any(runs[r.name].any_of for r in results)
    print(f"{'':5s}{'run':{width}s} {'arch':{arch}s} {'acceptable' if any_of else 'expected'} -> found (severity)")
    for res in results:
        r = runs[res.name]
        mark = ("FA  " if res.alarms else "ok  ") if r.healthy else ("MISS" if res.missing else "hit ")
        mark = mark if doctor else "----"
        exp = ("|" if r.any_of else ",").join(res.expect) or "(healthy)"
        found = ", ".join(f"{c}:{s}" for c, s in res.found.items()) or "-"
        m = res.metrics
        acc = m.get("best_val_accuracy", m.get("best_val_r2"))
        bal = m.get("best_val_balanced_accuracy")  # shown where it differs from the accuracy (imbalanced data)
        print(f"{mark} {res.name:{width}s} {r.arch:{arch}s} {exp} -> {found}")
        print(f"{'':5s}{'':{width}s} {res.status}, {res.epochs} epochs, {res.seconds:.1f}s, train_loss "
              f"{_fmt(m.get('train_loss'))}, best/last val_loss {_fmt(m.get('best_val_loss'))}/"
              f"{_fmt(m.get('last_val_loss'))}{'' if acc is None else f', best val acc/r2 {_fmt(acc)}'}"
              f"{'' if bal is None or bal == acc else f', best val bal.acc {_fmt(bal)}'}"
              f", know-nothing {_fmt(m.get('know_nothing'))}")
        if facts and res.name in facts:
            print(f"{'':5s}{'':{width}s} data: {facts[res.name]}")
    faulty = [x for x in results if runs[x.name].expect]
    healthy = [x for x in results if not runs[x.name].expect]
    if not doctor:
        print(f"\nfaulty runs: {len(faulty)}, healthy runs: {len(healthy)}")
        print("doctor off: nothing scored (this run only checks that the faults manifest)")
        print(f"total training time {sum(x.seconds for x in results):.0f}s")
        return {"recall": None, "expected": 0, "hit": 0, "misses": {}, "false_alarms": {}, "unexpected": {}}
    expected = sum(x.n_expected for x in faulty)
    hit = sum(x.n_hit for x in faulty)
    false_alarms = {x.name: x.alarms for x in healthy if x.alarms}
    unexpected = {x.name: {c: x.found[c] for c in x.unexpected} for x in faulty if x.unexpected}
    misses = {x.name: x.missing for x in faulty if x.missing}
    print()
    print(f"faulty runs: {len(faulty)}, healthy runs: {len(healthy)}")
    if expected:
        print(f"recall over expected codes{' (one acceptable code a run)' if faulty[0].any_of else ''}: "
              f"{hit}/{expected} = {hit / expected:.0%}" + (f"; missed: {misses}" if misses else ""))
    if any_of:  # every acceptable code counted on its own, for reference
        raised = sum(c in x.alarms for x in faulty for c in x.expect)
        print(f"for reference, acceptable codes raised: {raised}/{sum(len(x.expect) for x in faulty)}")
    print(f"false alarms (warning/error on a healthy run): {len(false_alarms)}/{len(healthy)} {false_alarms or ''}")
    print(f"unexpected warnings/errors on faulty runs (not counted): {unexpected or 'none'}")
    print(f"total training time {sum(x.seconds for x in results):.0f}s")
    return {"recall": hit / max(expected, 1), "expected": expected, "hit": hit, "misses": misses,
            "false_alarms": false_alarms, "unexpected": unexpected}


# --------------------------------------------------------------------------------------------- command line


def main(argv: list[str] | None, *, doc: str, runs: list[HeldOutRun], seed: int,
         use_seed: Callable[[int], None] | None = None, held: HeldOutSet | None = None) -> int:
    """The command line every held-out set shares: --only, --keep, --list, --seed, --no-doctor (and --case/--out,
    how an isolated set trains one run in a child process)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated run names (or substrings of them)")
    ap.add_argument("--keep", "--work", default="", help="write the run directories here instead of a temporary folder")
    ap.add_argument("--list", action="store_true", help="list the runs and exit")
    ap.add_argument("--seed", type=int, default=seed, help=f"re-draw splits, inits, batch orders ({seed}: as written)")
    ap.add_argument("--no-doctor", action="store_true",
                    help="train with the doctor off (to check that a fault really harms its run; nothing is found)")
    ap.add_argument("--case", default="", help=argparse.SUPPRESS)  # child of an isolated set: train this run ...
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)  # ... into this directory
    args = ap.parse_args(argv)
    if use_seed is not None:
        use_seed(args.seed)
    torch.set_num_threads(1)
    by_name = {r.name: r for r in runs}
    if args.case:
        _train(by_name[args.case].build(), Path(args.out), not args.no_doctor)
        return 0
    if args.list:
        for r in runs:
            print(f"{r.name:40s} {'healthy' if r.healthy else ('|' if r.any_of else ',').join(r.expect):40s} {r.fault}"
                  + (f"  [{r.note}]" if r.note else ""))
        return 0
    wanted = [w for w in args.only.split(",") if w]
    chosen = [r for r in runs if not wanted or any(w == r.name or w in r.name for w in wanted)]
    if not chosen:
        print(f"no run matches {args.only!r}; --list shows them", file=sys.stderr)
        return 2
    run_one = held.execute if held is not None else execute
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="heldout-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        results = [run_one(r, base / r.name, not args.no_doctor) for r in chosen]
        s = report(results, by_name, held.facts if held is not None else None, not args.no_doctor)
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    return 0 if not s["misses"] and not s["false_alarms"] else 1
