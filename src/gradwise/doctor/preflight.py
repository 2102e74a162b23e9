"""The pre-flight: before step 1, measure once what the checks need, then run every pre-flight check on it.

The measurements live in doctor/preflight_facts.py, the checks in doctor/checks/ (data, splits, wiring, init),
the order they run in in doctor/checks/preflight.py. Each check is called the same guarded way (a bug in one
loses that check's verdict, never the training) and `doctor.disable` switches it off. Nothing here changes the
model, the optimizer or the RNG streams (see `probes.preserved`).
"""

from __future__ import annotations

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


class Preflight:
    """Runs the pre-flight: `findings` holds what the checks found, `facts` what the later stages judge by,
    `probe_x`/`probe_y` the fixed batch of training rows the epoch-end probes reuse, `halt` whether training
    cannot even start (non-finite data, targets the loss cannot take)."""

    def __init__(self, model: nn.Module, loss_fn: Any, train: Any, val: Any, test: Any, device: torch.device,
                 forward: Any = None, task: str | None = None, bundle: Any = None, sampler_weights: bool = False,
                 thresholds: Thresholds = DEFAULT, disabled: tuple[str, ...] = ()) -> None:
        self.t = thresholds
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
            cls = checks.REGISTRY[name]
            got = checks.guarded(name, cls().check, facts, self.t)
            found = [] if got is None else [got] if isinstance(got, Finding) else list(got)
            self.findings += found
            facts.found.extend(found)  # later checks of the pre-flight read what was found
            if found and checks.guarded(name, cls.halts, facts):
                self.halt = True
                return True
        return False

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
