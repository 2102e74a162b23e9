"""The Doctor callback: pre-flight checks, cheap live probes, curve analysis and (optionally) repair.

Cost model (the doctor must stay within ~5% of a run's time):
* every step: one finiteness check of the loss and of one small gradient (the output layer's bias). On CPU that
  is ~15 us a step inside a training loop (~2 us warm: the first op after the backward pass runs on cold caches);
  on a GPU the checks are folded into a device flag that is read only on probe steps and at epoch ends, so there
  is no host sync per step;
* probe steps (steps 0, 1, 2, 4, 8, ... below `probe_every`, then every `probe_every` steps): per-layer gradient
  and weight norms and the size of the optimizer's update (one fused `_foreach_norm` and one host read before the
  step, one after it, and a copy of the weights);
* every epoch end: one forward pass of a fixed batch of at most 128 training rows in eval mode (activation
  statistics and the eval-mode loss on training rows), and the curve rules. Deterministic on purpose: a schedule
  driven by measured time would make the diagnosis depend on the machine's load.
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from rich.markup import escape

from gradwise.doctor import checks, repair, rules
from gradwise.doctor.checks.live import LiveFacts
from gradwise.doctor.evidence import labels_look_random
from gradwise.doctor.findings import Finding, fill_fixes
from gradwise.doctor.fixes import RunContext
from gradwise.doctor.preflight import PROBE_ROWS, Facts, Preflight, loss_kind, split_tensors, subsample
from gradwise.doctor.probes import (
    ActivationStats,
    ProbeRecord,
    StepProbe,
    locate_nonfinite,
    preserved,
    weight_layers,
)
from gradwise.doctor.thresholds import Thresholds, configured
from gradwise.errors import CheckpointError
from gradwise.train.checkpoint import json_default
from gradwise.train.events import Callback, Request

if TYPE_CHECKING:
    from gradwise.config import DoctorConfig
    from gradwise.train.loop import Trainer

MAX_RECORDS = 400  # probe records kept (the rules look at recent windows and at the first probes)


class Doctor(Callback):
    key = "doctor"
    order = 30  # before early stopping and the progress bar

    def __init__(self, cfg: DoctorConfig, task: str | None = None, bundle: Any = None,
                 thresholds: Thresholds | None = None) -> None:
        self.cfg = cfg
        self.task = task
        self.bundle = bundle
        # doctor.thresholds / doctor.disable: checked here, before training (a typo is a ConfigError naming it)
        self.t = thresholds if thresholds is not None else configured(getattr(cfg, "thresholds", None))
        self.disabled: tuple[str, ...] = tuple(getattr(cfg, "disable", None) or ())
        checks.validate_disabled(self.disabled)
        self._findings: list[Finding] = []
        self._seen: dict[str, int] = {}  # code -> highest severity reported
        self.repairs = 0
        self.facts: Facts | None = None
        self.records: list[ProbeRecord] = []
        self.activations: list[dict[str, dict[str, float]]] = []  # per epoch: layer -> dead / saturated share
        self.probe_x: Any = None
        self.probe_y: Any = None
        self._probe: StepProbe | None = None
        self._layers: list[tuple[str, torch.nn.Parameter]] = []
        self._watch: torch.nn.Parameter | None = None  # the small gradient checked every step
        self._flag: torch.Tensor | None = None  # GPU: non-finite loss/gradient seen since the last read
        self._nan_where: dict[str, Any] | None = None
        self._pending: Request | None = None  # a repair to request at the next step
        # what the doctor knew when it asked the loop to restore a state: put back once the loop has done it (the
        # restore reloads the doctor's state from the restored one, which predates its latest findings and repairs)
        self._kept: tuple[list[Finding], dict[str, int], int, bool, Facts | None] | None = None
        self._bad_state = False  # the current state is broken (non-finite, diverged): veto its checkpoint
        self._acts: ActivationStats | None = None
        self._cuda = False
        self._guard_grads = False  # check the watched gradient every step (nan_guard on, no fp16 loss scaling)
        self._probe_base = 0  # probes restart densely (0, 1, 2, 4, ...) after a repair changes the run
        self._cut_lr = False  # a repair has lowered the LR in this run
        # the first positive step loss since the start or a repair, and the last finite ones (CPU: read every step)
        self._loss_first: float | None = None
        self._loss_recent: collections.deque[float] = collections.deque(maxlen=self.t.recent_losses)
        self.halted = False
        self.context: RunContext | None = None  # what the fixes are judged against (set at fit start)
        # where the probe measurements go as they are taken (the report's StepLog sets it: DIR/probes.jsonl)
        self.probe_sink: Callable[[dict[str, Any]], None] | None = None

    # ---------------------------------------------------------------------------------------- reporting
    @property
    def findings(self) -> list[Finding]:
        """Most severe first, then in the order they were found; a symptom whose root cause another check found
        (e.g. underfitting under a softmax-before-cross-entropy mismatch) is shown as info, marked with its root."""
        return sorted(rules.explained(self._findings), key=lambda f: -f.rank)

    def report(self, trainer: Trainer, finding: Finding) -> bool:
        """Record, log and print a finding once per code (again when it comes back stronger or after a repair).
        During the run findings.jsonl gets every report as it is made (what a crashed run leaves behind); at the
        end of the fit it is rewritten with `findings`, the latest judgment of each code, as summary.json lists
        them."""
        seen = self._seen.get(finding.code)
        if seen is not None and seen >= finding.rank:
            # the same event judged again with more of the run behind it (whether a diverged loss came back down,
            # which epoch is the best one now): take the new judgment whole -- message, evidence and fixes -- so
            # that the text never states what the evidence has moved past; not printed or logged again (at the
            # end of the fit findings.jsonl is rewritten with the final findings)
            old = next((f for f in self._findings if f.code == finding.code), None)
            same_event = (old is not None and old.rank == finding.rank and old.epoch == finding.epoch != 0
                          and old.evidence.get("epoch") is not None
                          and old.evidence.get("epoch") == finding.evidence.get("epoch"))
            if same_event and old is not None:
                self._fill(trainer, finding)
                old.message, old.causes, old.fixes = finding.message, finding.causes, finding.fixes
                old.evidence = {**old.evidence, **finding.evidence}
            return False
        if finding.epoch != 0:  # a symptom of a root cause reported before is shown as info, with the root's fix
            finding = rules.explained([*self._findings, finding])[-1]
            if seen is not None and seen >= finding.rank:
                return False
        self._fill(trainer, finding)
        self._labels_first(finding)
        self._findings = [f for f in self._findings if f.code != finding.code]
        self._seen[finding.code] = finding.rank
        self._findings.append(finding)
        trainer.run_dir.append_finding(finding.to_dict())
        if trainer.is_main and trainer.config.train.progress != "none":
            style = {"error": "bold red", "warning": "yellow", "info": "cyan"}[finding.severity]
            # escape: fixes such as model.widths=[256, 256] must not be read as rich markup
            trainer.console.print(f"[{style}]doctor[/] {escape(finding.render())}", highlight=False, markup=True)
        return True

    def _labels_first(self, finding: Finding) -> None:
        """A run that learns nothing although its steps are a healthy size and its gradients reach every layer (and
        no units died or saturated) is most likely fed labels that do not depend on the inputs: say so first."""
        if finding.code != "no_learning" or finding.epoch == 0 or self.facts is None:
            return
        order = self.facts.layer_order or [n for n, _ in self._layers]
        quiet = not any(self._seen.get(c, 0) >= 1 for c in ("dead_units", "saturated_units", "vanishing_gradients",
                                                            "exploding_gradients", "lr_too_low", "lr_too_high"))
        random_labels = labels_look_random(self.facts, self.t)  # neighbours share labels at chance level
        healthy = rules.steps_look_healthy(self.records, order, self.t)
        if quiet and (random_labels or healthy):
            label = next((c for c in finding.causes if "labels" in c), "labels unrelated to the inputs")
            finding.causes = [label] + [c for c in finding.causes if c != label]
            finding.fixes = ["check that X[i] and y[i] describe the same example (a shuffled or misaligned join)"] \
                + finding.fixes
            finding.evidence = {**finding.evidence, "steps_and_gradients_healthy": healthy, **(random_labels or {})}

    def _fill(self, trainer: Trainer, finding: Finding) -> None:
        """Turn '<lr*0.1>' placeholders in fixes into numbers from this run (the peak LR of the schedule) and keep
        only the fixes that change something in this run and apply to its model (see `fixes.RunContext`)."""
        # the largest group's peak LR: with discriminative LRs (model.lr_decay_groups) group 0 holds the earliest
        # block's reduced LR, while optim.lr is the largest (the head's). A schedule keeps its peak in the group:
        # initial_lr (LambdaLR & co), max_lr (OneCycleLR, whose initial_lr is max_lr / div_factor)
        lr = max(max(float(v) for v in (g.get("initial_lr"), g.get("max_lr"), g["lr"]) if isinstance(v, int | float))
                 for g in trainer.optimizer.param_groups)
        bs = trainer.config.train.batch_size
        bs = bs if isinstance(bs, int) else None
        if self.context is None:
            finding.fixes = fill_fixes(finding.fixes, lr, bs)
        else:
            self.context.adapt(finding, lr, bs)

    # ---------------------------------------------------------------------------------------- fit start
    def on_fit_start(self, trainer: Trainer) -> None:
        model = trainer.model
        if self._may_repair() and not trainer.resumed:
            # first, before the pre-flight: a repair may retrain from the weights the fit starts with
            trainer.snapshot(repair.START)
        # first: the pre-flight's findings below are already judged against this run
        self.context = RunContext.for_run(trainer.config, model, self.bundle, self.task)
        self._cuda = trainer.device.type != "cpu"
        # fp16's loss scaler expects a non-finite gradient now and then: it skips that step and lowers its scale
        self._guard_grads = bool(self.cfg.nan_guard) and trainer.precision != "fp16"
        self._layers = weight_layers(model)
        loader_weights = getattr(trainer.train_loader, "weights", None) is not None or \
            getattr(self.bundle, "sample_weights", None) is not None
        if trainer.resumed and self.facts is not None:
            tr = split_tensors(trainer.train_loader)
            if tr is not None:
                idx = subsample(len(tr[1]), PROBE_ROWS)
                self.probe_x = tr[0][idx.to(tr[0].device)].to(trainer.device)
                self.probe_y = tr[1][idx.to(tr[1].device)].to(trainer.device)
        elif self.cfg.preflight and not trainer.resumed:
            dist_ = getattr(trainer, "dist", None)

            def preflight() -> tuple[dict[str, Any], Any, Any, list[dict[str, Any]], bool]:
                pre = Preflight(model, trainer.loss_fn, trainer.train_loader, trainer.val_loader,
                                trainer.test_loader, trainer.device, trainer.forward, self.task, self.bundle,
                                sampler_weights=loader_weights, disabled=self.disabled, thresholds=self.t,
                                loss_key=(repr(trainer.config.loss), type(trainer.loss_fn).__qualname__))
                pre.run()
                # sent to the other processes through the CPU (each moves it to its own device)
                move = _to_cpu if dist_ is not None else (lambda x: x)
                return (pre.facts.to_dict(), move(pre.probe_x), move(pre.probe_y),
                        [f.to_dict() for f in pre.findings], pre.halt)

            # data-parallel: the pre-flight reads whole splits (the same on every process), so it runs once, on
            # rank 0, and every process takes its facts, probe batch, findings and halt decision (an error there is
            # raised on every process); one process: run it here
            facts, px, py, found, halt = preflight() if dist_ is None else dist_.read_on_main(preflight)
            self.facts = Facts.from_dict(facts)
            self.probe_x, self.probe_y = _to(px, trainer.device), _to(py, trainer.device)
            findings = [Finding.from_dict(d) for d in found]
            for f in findings:
                self.report(trainer, f)
            if halt and self.cfg.halt_on_error:
                errors = [f for f in findings if f.severity == "error"]
                trainer.fail(f"doctor pre-flight: {errors[0].message if errors else 'cannot train'}")
                self.halted = True
        if self.facts is None:
            self.facts = Facts(loss_kind=loss_kind(trainer.loss_fn), task=self.task)
        self._sort_layers()
        # the gradient we check every step: the output layer's bias (a handful of numbers) or its weight
        params = dict(model.named_parameters())
        last = self.facts.layer_order[-1] if self.facts.layer_order else None
        cands = [last.rsplit(".", 1)[0] + ".bias", last] if last else []
        trainable = [p for p in params.values() if p.requires_grad]
        self._watch = next((params[c] for c in cands if c in params and params[c].requires_grad),
                           trainable[-1] if trainable else None)
        if self._cuda:
            self._flag = torch.zeros((), dtype=torch.bool, device=trainer.device)
        self._acts = ActivationStats(model, self.facts.unit_dims)

    def _sort_layers(self) -> None:
        """Follow the forward order (registration order can differ in custom modules)."""
        order = [n for n in (self.facts.layer_order if self.facts else []) if n in dict(self._layers)]
        if order:
            pos = {n: i for i, n in enumerate(order)}
            self._layers.sort(key=lambda np_: pos.get(np_[0], len(pos)))

    def _refresh_layers(self, trainer: Trainer) -> None:
        """Probe the layers that train now: gradual unfreezing (model.unfreeze_after, or a user's callback) turns
        frozen layers on between epochs. The run then follows a new trajectory, so the probe windows restart."""
        layers = weight_layers(trainer.model)
        if {n for n, _ in layers} == {n for n, _ in self._layers}:
            return
        self._layers = layers
        self._sort_layers()
        self.records.clear()
        self._probe_base = trainer.step

    # ---------------------------------------------------------------------------------------- every step
    def _is_probe(self, step: int) -> bool:
        every = self.cfg.probe_every
        k = step - self._probe_base
        return step % every == 0 or (0 <= k < every and k & (k - 1) == 0)  # 0, 1, 2, 4, 8, ... and k·every

    def on_batch_start(self, trainer: Trainer) -> None:
        if self._probe_base < 0:
            self._probe_base = trainer.step
        if trainer.batch_in_epoch == 0 and trainer.epoch > 0:  # after on_epoch_start, where unfreezing happens
            self._refresh_layers(trainer)
        if self._is_probe(trainer.step) and self._layers:
            from gradwise.recipes.optim import no_decay_parameter_names

            oc = trainer.config.optim
            explicit = trainer.penalty is not None
            pen = set(dict(trainer.model.named_parameters())) - no_decay_parameter_names(trainer.model) \
                if explicit else set()
            self._probe = StepProbe(self._layers, pen, oc.l1 if explicit else 0.0, oc.l2 if explicit else 0.0)

    def on_after_backward(self, trainer: Trainer) -> None:
        w = self._watch
        if self._guard_grads and w is not None and w.grad is not None:
            if self._cuda:
                self._flag |= ~torch.isfinite(w.grad).all()  # type: ignore[operator]
            elif not math.isfinite(w.grad.sum().item()):  # a sum past float32's range is a blow-up too
                # the weights are still those of the failing forward pass: find where the NaN/Inf appeared
                self._locate(trainer)
        if self._probe is not None:
            self._probe.after_backward(trainer.model, trainer.optimizer, trainer.step, trainer.epoch + 1)

    def _locate(self, trainer: Trainer) -> None:
        # once per incident: a run that goes on after a NaN (halt_on_error=false) must not re-run forwards per step
        if self._nan_where is None and trainer.last_batch is not None and "nonfinite_values" not in self._seen:
            try:
                self._nan_where = locate_nonfinite(trainer.model, trainer.last_batch[0], trainer.forward)
            except Exception as exc:  # never let the diagnosis break the run
                self._nan_where = {"error": f"{type(exc).__name__}: {exc}"}

    def on_batch_end(self, trainer: Trainer) -> None:
        if self._pending is not None:
            p, self._pending = self._pending, None
            trainer.request(p)
            return
        probe = self._probe is not None
        if self.cfg.nan_guard:
            if self._cuda:
                self._flag |= ~torch.isfinite(trainer.last_loss)  # type: ignore[operator]
                bad = probe and bool(self._flag)
            else:
                v = float(trainer.last_loss)  # read every step anyway: keep the first and highest finite loss
                bad = not math.isfinite(v) or self._nan_where is not None
                if math.isfinite(v):
                    if self._loss_first is None:
                        self._loss_first = v
                    self._loss_recent.append(v)
            if bad and "nonfinite_values" in self._seen and not self.cfg.repair and not self.cfg.halt_on_error:
                bad = False  # reported already; the user asked to go on regardless
            if bad:
                self._probe = None
                self._nonfinite(trainer)
                return
        if probe:
            rec = self._probe.after_step()  # type: ignore[union-attr]
            self._probe = None
            if rec is not None:
                rec.loss = float(trainer.last_loss)
                self.records.append(rec)
                if self.probe_sink is not None:
                    self.probe_sink(rec.to_row())
                if len(self.records) > MAX_RECORDS:
                    del self.records[8:9]  # keep the first probes (they are the reference) and the recent ones
                self._probe_rules(trainer)

    def _nonfinite(self, trainer: Trainer) -> None:
        self._bad_state = True
        if self._cuda:
            self._locate(trainer)
        where = self._nan_where or {}
        self._nan_where = None
        if self._flag is not None:
            self._flag.zero_()
        loss = float(trainer.last_loss)
        lr = float(trainer.optimizer.param_groups[0]["lr"])
        start = self._loss_first
        recent = list(self._loss_recent) or [r.loss for r in self.records[-self.t.recent_losses:]
                                             if r.loss is not None and math.isfinite(r.loss)]
        if start is None and self.records and self.records[0].loss is not None:
            start = self.records[0].loss  # GPU: the step losses are not read every step, the probes' are
        # the live checks (doctor/checks/live.py): the NaN itself, a loss that grew before it, a gradient spike
        live = LiveFacts(trainer.step, trainer.epoch + 1, loss, lr, where, start, tuple(recent), tuple(self.records))
        for f in checks.run([c for c in checks.checks(stage="step") if c.reads == "live"], live, self.t,
                            self.disabled):
            self.report(trainer, f)
        if self._may_repair():
            self._repair(trainer, repair.after_nonfinite(trainer.step, self._repair_state(trainer)))
        elif self.cfg.halt_on_error:
            trainer.fail(f"non-finite loss at step {trainer.step} (doctor NaN guard)")

    # ---------------------------------------------------------------------------------------- repair
    def _may_repair(self) -> bool:
        return bool(self.cfg.repair and self.repairs < self.cfg.max_repairs)

    def _repair_state(self, trainer: Trainer) -> repair.RepairState:
        ref = self.records[0] if self.records else None
        return repair.RepairState(
            epoch=trainer.epoch, epochs=trainer.epochs, clip_grad=trainer.clip_grad, cut_lr=self._cut_lr,
            init_abnormal=bool(self.facts is not None and self.facts.init_abnormal), seen=frozenset(self._seen),
            largest_step=self._largest_step(),
            recent_updates=tuple(rules.update_ratio(r, ref) for r in self.records[-3:]))

    def _repair(self, trainer: Trainer, request: repair.RepairRequest) -> None:
        """Carry out a repair decision: the doctor's own bookkeeping, then the loop's request()."""
        dist_ = getattr(trainer, "dist", None)
        if dist_ is not None and not dist_.is_main:
            # data-parallel: rank 0's decision is the run's (Distributed.agree sends its rollback to every process);
            # another process keeps no repair bookkeeping of its own, and its doctor does not stop the run where
            # rank 0's repairs it (when rank 0 has no repair left it stops, and the agreement stops everyone)
            return
        code = request.finding
        self.repairs += 1
        self._cut_lr = self._cut_lr or (request.lr_factor is not None and request.lr_factor < 1)
        loss = float(trainer.history[-1]["train_loss"]) if trainer.history else None
        note = {"by": "doctor", "finding": str(code), "train_loss_before": loss}
        self.records.clear()  # what follows is a different trajectory: judge it afresh
        self.activations.clear()
        self._probe_base = -1  # the next step (after the rollback, if any) restarts the dense probe schedule
        self._loss_first = None
        self._loss_recent.clear()
        self._seen.pop(code, None)  # a recurrence after the repair is news
        for f in self._findings:  # ... and the repaired finding explains no symptom that comes after it
            if f.code == code:
                f.evidence = {**f.evidence, "repaired": True}
        if request.now:
            self._ask(trainer, request.to_request(note))
        else:
            self._pending = request.to_request(note)  # restores nothing: nothing to keep

    def _ask(self, trainer: Trainer, request: Request) -> None:
        if request.restore:
            self._kept = (list(self._findings), dict(self._seen), self.repairs, self._cut_lr, self.facts)
        trainer.request(request)

    def on_request_done(self, trainer: Trainer, action: dict[str, Any]) -> None:
        """The loop carried out a request: after a restore the state is a good one again, and what the doctor knew
        when it asked (findings, repairs) replaces what the restore loaded from the older state."""
        if not action.get("restored"):
            return
        self._bad_state = False
        kept, self._kept = self._kept, None
        if kept is not None:
            self._findings, self._seen, self.repairs, self._cut_lr, facts = kept
            self.facts = facts if facts is not None else self.facts

    def on_checkpoint(self, trainer: Trainer, names: list[str]) -> bool:
        return not self._bad_state  # never replace a good checkpoint with a broken (non-finite, diverged) state

    def _outcomes(self, trainer: Trainer) -> list[dict[str, Any]]:
        """The run's actions, each of the doctor's with its outcome (for the summary; trainer.actions is the loop's
        record and stays as the loop wrote it)."""
        L = [r.get("train_loss") for r in trainer.history]
        finite = bool(L) and all(isinstance(v, float) and math.isfinite(v) for v in L)
        actions = [dict(a) for a in trainer.actions]
        for a in actions:
            ch = a.get("changes", {})
            if ch.get("by") != "doctor" or "outcome" in a:
                continue
            after = [r["train_loss"] for r in trainer.history if r.get("step", 0) > a.get("step", 0)]
            before = ch.get("train_loss_before")
            if trainer.status == "failed" or not finite or not after:
                a["outcome"] = "failed"
            elif ch.get("finding") in ("lr_too_low", "plateau", "no_learning"):
                a["outcome"] = "improved" if before and min(after) < 0.9 * before else "no effect"
            else:
                a["outcome"] = "recovered"
            a["train_loss_after"] = after[-1] if after else None
        return actions

    # ---------------------------------------------------------------------------------------- probe rules
    def _probe_rules(self, trainer: Trainer) -> None:
        found = rules.probe_findings(self.records, self.facts, trainer.history, self.t,
                                     clipping=trainer.clip_grad is not None, disabled=self.disabled)
        for f in found:
            self.report(trainer, f)
        request = repair.after_probes(found, self._repair_state(trainer), self.t) if self._may_repair() else None
        if request is not None:
            self._repair(trainer, request)

    # ---------------------------------------------------------------------------------------- epoch end
    def _epoch_probe(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self.probe_x is None or self._acts is None:
            return

        # the eval-mode loss on training rows is logged for every model: a module can behave differently in
        # eval() without being a known BatchNorm/Dropout (e.g. a hand-written dropout)
        model = trainer.model
        px, py, rows = self.probe_x, self.probe_y, None
        dist_ = getattr(trainer, "dist", None)
        sliced = (dist_ is not None and dist_.world > 1 and isinstance(px, torch.Tensor)
                  and isinstance(py, torch.Tensor) and len(px) >= dist_.world)
        if sliced:  # data-parallel: each process measures its share of the probe rows (the same batch everywhere)
            assert dist_ is not None
            px, py = torch.tensor_split(px, dist_.world)[dist_.rank], torch.tensor_split(py, dist_.world)[dist_.rank]
            rows = len(px)
        try:
            with preserved(model, mode=False, all_rngs=False), torch.no_grad(), trainer.autocast():
                out, stats = self._acts.measure(model, px, trainer.forward)
                e = float(trainer.loss_fn(out, py))
        except Exception:
            e, stats = None, None
        if sliced:  # ... and the statistics are combined, so that they describe the whole probe batch
            assert dist_ is not None
            e, stats = _combine(dist_.all_gather_object((e, _stats_to_cpu(stats), rows) if stats is not None
                                                        else None), bool(self.facts and self.facts.sum_reduced))
        if e is None or stats is None:
            return
        logs["train_loss_eval_mode"] = e if math.isfinite(e) else str(e)
        row: dict[str, dict[str, float]] = {}
        for name, s in stats.items():
            if s["kind"] == "relu":
                row[name] = {"dead": float(s["dead"].float().mean()), "units": s["units"]}
            else:
                row[name] = {"saturated": float((s["saturated"] >= self.t.sat_unit).float().mean()),
                             "sat_mean": float(s["saturated"].mean()), "units": s["units"], "kind": s["kind"]}
        self.activations.append(row)
        if self.probe_sink is not None:
            self.probe_sink({"kind": "activations", "step": trainer.step, "epoch": logs.get("epoch"), "layers": row})

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        tl = logs.get("train_loss", 0.0)
        if not (isinstance(tl, float) and math.isfinite(tl)):
            self._bad_state = True
            return
        if self._cuda and self._flag is not None and bool(self._flag):
            self._nonfinite(trainer)
            return
        self._epoch_probe(trainer, logs)
        history = [*trainer.history, logs]
        acts = rules.activation_findings(self.activations, logs.get("epoch"), trainer.step, self.t,
                                         coupled_decay=_coupled_decay(trainer.optimizer), disabled=self.disabled)
        for f in acts:
            self.report(trainer, f)
        found = acts + rules.curve_findings(history, self.facts, planned_epochs=trainer.epochs, t=self.t,
                                            early_stopping=_keeps_best(trainer), disabled=self.disabled)
        found += rules.probe_findings(self.records, self.facts, history, self.t, epoch_end=True,
                                      clipping=trainer.clip_grad is not None, disabled=self.disabled)
        now = logs.get("epoch")
        for f in found[len(acts):]:
            if not (f.code == "lr_too_low" and self._cut_lr):  # never blame the doctor's own LR cut on the schedule
                self.report(trainer, f)
        self._dead_by_large_steps(trainer, acts)
        fresh = {f.code: f for f in found if f.epoch == now}
        # never checkpoint a diverged state; once the loss is back near its best, checkpoints are good again
        self._bad_state = self._diverged(history)
        if not self._may_repair():
            return
        request = repair.after_epoch(fresh, found, self._repair_state(trainer), self.t, now)
        if request is not None:
            self._repair(trainer, request)

    def _dead_by_large_steps(self, trainer: Trainer, acts: list[Finding]) -> None:
        """The live check dead_after_large_steps (doctor/checks/live.py) on this epoch's activation findings."""
        live = LiveFacts(trainer.step, trainer.epoch + 1, activations=tuple(acts), seen=frozenset(self._seen),
                         facts=self.facts, largest_step=self._largest_step())
        for f in checks.run([checks.REGISTRY["dead_after_large_steps"]], live, self.t, self.disabled):
            self.report(trainer, f)

    def _largest_step(self) -> float | None:
        """The largest update/weight ratio probed at >= lr_active of the peak LR after the optimizer's start-up
        steps (Adam's first steps are ~lr per coordinate whatever the gradient), if any."""
        if not self.records:
            return None
        peak = max(r.lr for r in self.records)
        ref = self.records[0]
        ratios = [rules.update_ratio(r, ref) for r in self.records
                  if r.step - ref.step >= self.t.lr_low_burn_in and r.lr >= self.t.lr_active * peak]
        ratios = [u for u in ratios if math.isfinite(u)]
        return max(ratios) if ratios else None

    def _diverged(self, history: list[dict[str, Any]]) -> bool:
        L = [r.get("train_loss") for r in history]
        if len(L) < 2 or not all(isinstance(v, float) and math.isfinite(v) for v in L):
            return False
        scale = (self.facts.scale if self.facts else None) or L[0]
        best = min(L[:-1])
        t = self.t
        collapsed = best <= t.collapse_best * scale and L[-1] >= t.collapse_level * scale  # back at knowing nothing
        return L[-1] - best >= t.diverge_rise * scale and (L[-1] >= t.diverge_factor * best or collapsed)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.halted:
            return
        for f in rules.curve_findings(trainer.history, self.facts, final=True, planned_epochs=trainer.epochs,
                                      t=self.t, early_stopping=_keeps_best(trainer), disabled=self.disabled):
            self.report(trainer, f)
        dropout = self.facts.dropout_max if self.facts else 0.0
        for f in rules.over_regularization(self.records, self.facts, trainer.history, trainer.config, self.t,
                                           dropout=dropout, disabled=self.disabled):
            self.report(trainer, f)
        for f in rules.probe_findings(self.records, self.facts, trainer.history, self.t, epoch_end=True,
                                      clipping=trainer.clip_grad is not None, disabled=self.disabled, final=True):
            if not (f.code == "lr_too_low" and self._cut_lr):  # never advise undoing the doctor's own LR cut
                self.report(trainer, f)

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        summary["findings"] = [f.to_dict() for f in self.findings]
        # the same final list in findings.jsonl: a finding judged again later (a new best epoch, a symptom whose
        # root came later) must read the same in every place (`gradwise doctor DIR` reads this file)
        trainer.run_dir.write_findings(summary["findings"])
        facts = self.facts
        summary["doctor"] = {
            "repairs": self.repairs,
            "facts": facts.to_dict() if facts is not None else None,
            "probes": len(self.records),
            "run": self.context.to_dict() if self.context is not None else None,
        }
        summary["actions"] = self._outcomes(trainer)

    # ---------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        # one JSON string: a checkpoint is written every epoch and pickling costs per object (the facts hold
        # lists of layer names and class counts)
        facts = self.facts.to_dict() if self.facts is not None else None
        return {"json": json.dumps({"findings": [f.to_dict() for f in self._findings], "repairs": self.repairs,
                                    "cut_lr": self._cut_lr, "facts": facts}, default=json_default)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # checked here, as early stopping does: a damaged value is a refused resume naming the checkpoint (the loop
        # adds the file), not a TypeError in the middle of the resumed run
        try:
            if isinstance(state, dict) and "json" in state:
                state = json.loads(state["json"])
            if not isinstance(state, dict):
                raise TypeError(f"a {type(state).__name__}, not a dict")
            repairs = state.get("repairs", 0)
            if isinstance(repairs, bool) or not isinstance(repairs, int) or repairs < 0:
                raise TypeError(f"repairs {str(repairs)[:40]!r}")
            findings = [Finding.from_dict(d) for d in state.get("findings", [])]
            facts = Facts.from_dict(state["facts"]) if state.get("facts") else None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"its doctor state is damaged ({str(exc)[:120]}).") from None
        self._findings = findings
        self._seen = {f.code: f.rank for f in self._findings}
        self.repairs = repairs
        self._cut_lr = bool(state.get("cut_lr", False))
        if facts is not None:
            self.facts = facts


def _stats_to_cpu(stats: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
            for name, s in stats.items()}


def _combine(parts: list[Any], sum_reduced: bool) -> tuple[float | None, dict[str, dict[str, Any]] | None]:
    """The eval-mode loss and activation statistics of the whole probe batch from each process's share of its rows:
    a unit is dead when it fired on no process's rows, a saturated share is the row-weighted mean of the shares,
    the loss the row-weighted mean (a summed loss: the sum). (None, None) when a process could not measure."""
    if any(p is None for p in parts) or len({tuple(p[1]) for p in parts}) != 1:
        return None, None
    total = sum(p[2] for p in parts)
    losses = [p[0] for p in parts]
    loss = sum(losses) if sum_reduced else sum(v * p[2] for v, p in zip(losses, parts, strict=True)) / total
    stats: dict[str, dict[str, Any]] = {}
    for name, s in parts[0][1].items():
        if s["kind"] == "relu":
            dead = torch.stack([p[1][name]["dead"] for p in parts]).all(dim=0)
            stats[name] = {**s, "dead": dead}
        else:
            sat = sum(p[1][name]["saturated"] * p[2] for p in parts) / total
            stats[name] = {**s, "saturated": sat}
    return loss, stats


def _to_cpu(x: Any) -> Any:
    """A probe batch (a tensor, or a tuple/list/dict of them) on the CPU, to send to the other processes."""
    return _to(x, torch.device("cpu"))


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, tuple | list):
        return type(x)(_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


# adaptive optimizers whose `weight_decay` is an L2 term added to the gradient (then rescaled per coordinate)
_ADAPTIVE = (torch.optim.Adam, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adamax, torch.optim.RMSprop,
             torch.optim.Adagrad, torch.optim.Adadelta)


def _coupled_decay(optimizer: Any) -> float:
    """The largest weight decay an adaptive optimizer applies as L2 inside its gradient (0 for SGD, AdamW, or a
    group with decoupled_weight_decay)."""
    if not isinstance(optimizer, _ADAPTIVE) or isinstance(optimizer, torch.optim.AdamW):
        return 0.0
    return max((float(g.get("weight_decay") or 0.0) for g in optimizer.param_groups
                if not g.get("decoupled_weight_decay")), default=0.0)


def _keeps_best(trainer: Trainer) -> bool:
    es = trainer.config.train.early_stopping
    return bool(es.enabled and es.restore_best and es.monitor == "val_loss" and trainer.val_loader is not None)


