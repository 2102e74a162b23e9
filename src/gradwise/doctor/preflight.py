"""The pre-flight: before step 1, measure once what the checks need, then run every pre-flight check on it.

The measurements live in doctor/preflight_facts.py, the checks in doctor/checks/ (data, splits, wiring, init),
the order they run in in doctor/checks/preflight.py. Each check is called the same guarded way (a bug in one
loses that check's verdict, never the training) and `doctor.disable` switches it off. Nothing here changes the
model, the optimizer or the RNG streams (see `probes.preserved`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from gradwise.doctor import checks
from gradwise.doctor.checks.init import init_abnormal
from gradwise.doctor.checks.preflight import PHASES
from gradwise.doctor.facts import (  # noqa: F401 - re-exported: where the doctor's other modules found them
    CLASS_LOSSES,
    PROBE_ROWS,
    Facts,
    constant_losses,
    loss_kind,
    split_tensors,
    subsample,
)
from gradwise.doctor.facts import narrowest as _narrowest  # noqa: F401 - (tests)
from gradwise.doctor.findings import Finding
from gradwise.doctor.preflight_facts import (
    PreflightFacts,
    measure_data,
    measure_gradients,
    measure_model,
    measure_rest,
    model_facts,
)
from gradwise.doctor.probes import preserved, trace_model
from gradwise.doctor.thresholds import DEFAULT, Thresholds

# ------------------------------------------------------------------------------ data checks, once per data set

# The checks that read the splits only, not the model, loss function or optimizer: a tuning study's trials train on
# the same prepared tensors, so their verdicts are the same in every trial. Inside `reuse_data_checks`, they run once
# per data set and later runs replay their findings (copies: each run adapts its findings' fixes to its own config).
DATA_CHECKS = frozenset({"nonfinite_data", "text_splits", "leakage", "near_copies", "split_scale", "label_column",
                         "split_structure"})


class DataChecks:
    """The data checks' verdicts on one set of splits (the last one seen), kept across runs on the same tensors."""

    def __init__(self) -> None:
        self._tensors: tuple[Any, ...] = ()  # held, so that another data set cannot come back under the same ids
        self._other: tuple[Any, ...] = ()
        self._verdicts: dict[str, tuple[list[dict[str, Any]], bool]] = {}
        self.computed = 0  # data checks run on the data (a study: each once per worker process and data set)
        self.replayed = 0  # data checks answered from an earlier run on the same data

    def _match(self, tensors: tuple[Any, ...], other: tuple[Any, ...]) -> None:
        same = len(tensors) == len(self._tensors) and all(a is b for a, b in zip(tensors, self._tensors, strict=True))
        if not (same and other == self._other):
            self._tensors, self._other, self._verdicts = tensors, other, {}

    def get(self, key: tuple[tuple[Any, ...], tuple[Any, ...]], name: str) -> tuple[list[Finding], bool] | None:
        self._match(*key)
        kept = self._verdicts.get(name)
        if kept is None:
            return None
        self.replayed += 1
        return [Finding.from_dict(d) for d in kept[0]], kept[1]

    def put(self, key: tuple[tuple[Any, ...], tuple[Any, ...]], name: str, findings: list[Finding],
            halt: bool) -> None:
        self._match(*key)
        self._verdicts[name] = ([f.to_dict() for f in findings], halt)
        self.computed += 1


_DATA_CHECKS: contextvars.ContextVar[DataChecks | None] = contextvars.ContextVar("gradwise_data_checks",
                                                                                  default=None)


@contextlib.contextmanager
def reuse_data_checks(cache: DataChecks) -> Iterator[DataChecks]:
    """Within the block, the pre-flight's data checks (DATA_CHECKS) on splits it has seen run once: runs on the same
    in-memory tensors (gradwise tune's trials, data prepared once per process) get the first run's findings."""
    token = _DATA_CHECKS.set(cache)
    try:
        yield cache
    finally:
        _DATA_CHECKS.reset(token)


class Preflight:
    """Runs the pre-flight: `findings` holds what the checks found, `facts` what the later stages judge by,
    `probe_x`/`probe_y` the fixed batch of training rows the epoch-end probes reuse, `halt` whether training
    cannot even start (non-finite data, targets the loss cannot take)."""

    def __init__(self, model: nn.Module, loss_fn: Any, train: Any, val: Any, test: Any, device: torch.device,
                 forward: Any = None, task: str | None = None, bundle: Any = None, sampler_weights: bool = False,
                 thresholds: Thresholds = DEFAULT, disabled: tuple[str, ...] = (), loss_key: Any = None) -> None:
        self.t = thresholds
        self.loss_key = loss_key  # what makes this loss function (its config), part of a data check's cache key
        self.disabled = disabled
        self.model, self.loss_fn, self.device, self.forward = model, loss_fn, device, forward
        self.train, self.val, self.test = train, val, test
        self.bundle = bundle
        self.sampler_weights = sampler_weights
        self.facts = Facts(loss_kind=loss_kind(loss_fn), task=task)
        self.findings: list[Finding] = []
        self.probe_x: Any = None
        self.probe_y: Any = None
        self.halt = False

    def run_phase(self, phase: str, facts: PreflightFacts) -> bool:
        """Run the phase's checks in order, each guarded; True when one of them halts the pre-flight."""
        for name in PHASES[phase]:
            if name in self.disabled:
                continue
            found, halts = self._verdict(name, facts)
            self.findings += found
            facts.found.extend(found)  # later checks of the pre-flight read what was found
            if halts:
                self.halt = True
                return True
        return False

    def _verdict(self, name: str, facts: PreflightFacts) -> tuple[list[Finding], bool]:
        """One check's findings and whether they halt the pre-flight: run guarded, or replayed from an earlier run
        on the same data (`reuse_data_checks`, the data checks only)."""
        cache = _DATA_CHECKS.get() if name in DATA_CHECKS else None
        key = self._data_key() if cache is not None else None
        # a check may read what the checks before it found (facts.found: e.g. split_structure skips once a model
        # check found a train/eval mismatch), so those codes are part of what its verdict is kept under
        slot = f"{name}|{','.join(sorted({f.code for f in facts.found}))}"
        kept = cache.get(key, slot) if cache is not None and key is not None else None
        if kept is not None:
            return kept
        cls = checks.REGISTRY[name]
        failed: list[bool] = []

        def check() -> Any:
            try:
                return cls().check(facts, self.t)
            except Exception:
                failed.append(True)  # a bug (or a transient error) is no verdict: never replayed as "nothing"
                raise

        got = checks.guarded(name, check)
        found = [] if got is None else [got] if isinstance(got, Finding) else list(got)
        halts = bool(found) and bool(checks.guarded(name, cls.halts, facts))
        if cache is not None and key is not None and not failed:
            cache.put(key, slot, found, halts)
        return found, halts

    def _data_key(self) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
        """What a data check's verdict depends on: the splits' tensors (by identity: in-memory loaders only), the
        loss, thresholds and switched-off checks. None: the data is not in memory, so nothing is reused."""
        tensors: list[Any] = []
        for loader in (self.train, self.val, self.test):
            if loader is None:
                tensors += [None, None]
                continue
            # the tensors as prepared (a GPU run's loader holds a fresh device copy per run)
            x, y = getattr(loader, "source", (getattr(loader, "x", None), getattr(loader, "y", None)))
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
                return None
            tensors += [x, y]
        return tuple(tensors), (self.facts.loss_kind, self.loss_key, self.t, tuple(sorted(self.disabled)),
                                self.device)

    def run(self) -> None:
        tr = split_tensors(self.train)
        if tr is None:
            return
        x, y = tr
        pf = measure_data(x, y, self.loss_fn, self.facts.loss_kind, self.train, self.val, self.test, self.bundle,
                          self.sampler_weights)
        if self.run_phase("data", pf):
            return
        idx = subsample(len(y), self.t.probe_rows)
        px, py = x[idx.to(x.device)].to(self.device), y[idx.to(y.device)].to(self.device)
        self.probe_x, self.probe_y = px, py
        model_facts(self.model, self.facts)
        with preserved(self.model, mode=False), torch.enable_grad():
            try:
                trace = trace_model(self.model, px, self.forward)
            except Exception:  # noqa: BLE001 - the loop will raise the real error with its own message
                return
            pf = measure_model(pf, self.model, trace, px, self.loss_fn, self.facts)
            if self.run_phase("outputs", pf):
                return
            pf, loss = measure_rest(pf, self.model, self.loss_fn, self.forward, self.device, (px, py), self.facts)
            if loss is not None and loss.requires_grad:
                pf = replace(pf, gradients=measure_gradients(self.model, loss))
            self.run_phase("rest", pf)
            # a fact the later stages read, from the initialization check's verdict (none when it is switched off)
            self.facts.init_abnormal = any(f.code == "bad_initialization" for f in self.findings) and \
                init_abnormal(pf, self.t)
