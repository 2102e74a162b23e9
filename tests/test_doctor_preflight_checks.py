"""The pre-flight checks one at a time, on synthetic read-only facts (doctor/preflight_facts.py): each family (data,
splits, wiring, init) with its thresholds' edges on both sides, and the runner (the order, halting, the guard,
doctor.disable, the facts the later stages read)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from gradwise.doctor import checks
from gradwise.doctor.checks.preflight import PHASES
from gradwise.doctor.findings import Finding
from gradwise.doctor.preflight import Preflight
from gradwise.doctor.preflight_facts import Gradients, Init, PreflightFacts, Splits, read_labels
from gradwise.doctor.probes import Trace
from gradwise.doctor.thresholds import DEFAULT, configured

G = torch.Generator().manual_seed(0)


def _x(n: int, d: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(n, d, generator=G) * scale


def _trace(out: torch.Tensor, final: nn.Module | None = None, collapsed: list[tuple[str, str]] | None = None) -> Trace:
    return Trace(out, ["0"], ("0", final) if final is not None else None, collapsed or [], {}, ["0.weight"])


def facts(x: torch.Tensor | None = None, y: torch.Tensor | None = None, **kw: Any) -> PreflightFacts:
    x = _x(100, 4) if x is None else x
    y = torch.arange(len(x)) % 3 if y is None else y
    kw.setdefault("loss_kind", "ce")
    return PreflightFacts(x=x, y=y, **kw)


def run(name: str, f: PreflightFacts, **thresholds: float) -> list[Finding]:
    """The check's findings (a list, whatever it returned) with the given thresholds changed."""
    got = checks.REGISTRY[name]().check(f, configured(thresholds))
    return [] if got is None else [got] if isinstance(got, Finding) else list(got)


def codes(found: list[Finding]) -> list[tuple[str, str]]:
    return [(f.code, f.severity) for f in found]


# ------------------------------------------------------------------------------------------------ declarations


def test_every_preflight_check_runs_in_a_declared_phase_once() -> None:
    declared = [n for names in PHASES.values() for n in names]
    assert len(declared) == len(set(declared))
    registered = {n for n, c in checks.REGISTRY.items() if c.stage == "preflight"}
    assert set(declared) == registered
    assert all(not checks.REGISTRY[n].runs_in for n in registered)  # carried out by the class itself
    assert {checks.REGISTRY[n].family for n in registered} == {"data", "splits", "wiring", "init"}


def test_facts_are_read_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts().loss_kind = "mse"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ data


def test_nonfinite_data_finds_nan_rows_and_halts() -> None:
    x = _x(50, 3)
    assert run("nonfinite_data", facts(x)) == []
    x[7, 1] = float("nan")
    found = run("nonfinite_data", facts(x))
    assert codes(found) == [("nonfinite_values", "error")]
    assert found[0].evidence == {"split": "train", "tensor": "inputs", "values": 1, "rows": 1}
    assert checks.REGISTRY["nonfinite_data"].halts(facts(x))


@pytest.mark.parametrize(("kind", "y", "shape", "problem", "code", "severity", "halts"), [
    ("ce", torch.tensor([1, 2, 3] * 10), (30, 3), "out_of_range", "label_problem", "error", True),
    ("ce", torch.tensor([0, 1, 2] * 10), (30, 3), None, None, None, False),
    ("ce", torch.tensor([0, 1] * 10), (20, 1), "one_logit", "loss_output_mismatch", "error", True),
    ("ce", torch.linspace(0, 1, 20), (20, 3), "not_class_ids", "label_problem", "error", False),
    ("bce", torch.tensor([0.0, 2.0] * 10), (20, 1), "bce_range", "label_problem", "error", True),
    ("mse", torch.tensor([0, 1, 2] * 10), (30, 1), "regression_on_ids", "loss_output_mismatch", "warning", False),
])
def test_labels_the_loss_cannot_take(kind: str, y: torch.Tensor, shape: tuple[int, ...], problem: str | None,
                                     code: str | None, severity: str | None, halts: bool) -> None:
    labels = read_labels(y, kind, shape, None)
    assert labels.problem == problem
    f = facts(_x(len(y), 4), y, loss_kind=kind, labels=labels)
    found = run("labels", f)
    assert codes(found) == ([(code, severity)] if code else [])
    assert checks.REGISTRY["labels"].halts(f) is halts


def test_labels_missing_classes_are_info_and_ignore_index_is_left_out() -> None:
    y = torch.tensor([0, 1, -100] * 10)
    labels = read_labels(y, "ce", (30, 4), -100)
    assert labels.counts == [10, 10, 0, 0]
    found = run("labels", facts(_x(30, 4), y, labels=labels))
    assert codes(found) == [("label_problem", "info")]
    assert found[0].evidence["classes_without_examples"] == [2, 3]


@pytest.mark.parametrize(("ratio", "weighted", "expected"), [
    (10.0, False, [("class_imbalance", "warning")]),  # at the threshold: raised
    (10.1, False, []),
    (10.0, True, [("class_imbalance", "info")]),  # class weights are on
])
def test_class_imbalance_edges(ratio: float, weighted: bool, expected: list[tuple[str, str]]) -> None:
    y = torch.tensor([0] * 100 + [1] * 10)
    labels = read_labels(y, "ce", (110, 2), None)
    f = facts(_x(110, 2), y, labels=labels, class_weighted=weighted)
    assert codes(run("class_imbalance", f, imbalance_ratio=ratio)) == expected


@pytest.mark.parametrize(("ordered", "bn", "expected"), [
    (True, (), [("class_imbalance", "warning")]),
    (True, ("bn",), [("train_eval_mismatch", "warning")]),
    (False, (), []),  # a shuffling loader
])
def test_sample_order_single_class_batches(ordered: bool, bn: tuple[str, ...], expected: list[tuple[str, str]]) -> None:
    y = torch.arange(3).repeat_interleave(40)  # stored class by class
    f = facts(_x(120, 4), y, ordered=ordered, batch_size=10, batchnorm=bn)
    assert codes(run("sample_order", f)) == expected
    assert run("sample_order", f, single_class_batches=1.01) == []  # every batch holds one class: 100% < 101%


@pytest.mark.parametrize(("scale", "norm_first", "expected"), [
    (10.5, False, [("unnormalized_inputs", "warning")]),
    (9.5, False, []),
    (10.5, True, [("unnormalized_inputs", "info")]),  # a normalization layer comes first
    (0.0095, False, [("unnormalized_inputs", "warning")]),
    (0.0105, False, []),
])
def test_input_scale_edges(scale: float, norm_first: bool, expected: list[tuple[str, str]]) -> None:
    x = torch.full((50, 3), scale)  # every feature's RMS is `scale`
    first = nn.LayerNorm(3) if norm_first else nn.Linear(3, 2)
    f = facts(x, trace=_trace(torch.zeros(50, 2)), first_module=first)
    assert codes(run("input_scale", f)) == expected


# ------------------------------------------------------------------------------------------------ splits


def test_leakage_edges() -> None:
    x = _x(200, 5)
    val = torch.cat([x[:10], _x(90, 5)])  # 10% of the validation rows are training rows
    f = facts(x, torch.zeros(200), splits=Splits.of(val=(val, torch.zeros(100))))
    assert codes(run("leakage", f)) == [("data_leakage", "warning")]
    assert codes(run("leakage", f, leak_warn=0.11)) == [("data_leakage", "info")]
    assert codes(run("leakage", f, leak_info=0.11)) == []
    assert codes(run("leakage", f, leak_unique=1.01)) == [("data_leakage", "info")]  # as if few distinct rows


def test_near_copies_edges_and_identical_rows_left_to_leakage() -> None:
    x = _x(300, 8)
    val = x[:100] + 1e-3 * _x(100, 8)  # jittered copies
    f = facts(x, splits=Splits.of(val=(val, torch.zeros(100))))
    found = run("near_copies", f)
    assert codes(found) == [("data_leakage", "warning")]
    share = found[0].evidence["share_near_copies"]
    assert codes(run("near_copies", f, near_copy_share=share + 0.01)) == []
    f.found.append(Finding("data_leakage", "warning", "identical rows"))
    assert run("near_copies", f) == []


def _label_column_data(n: int, classification: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = _x(n, 5)
    y = (torch.rand(n, generator=G) < 0.5).long() if classification else _x(n, 1)[:, 0]
    x[:, 2] = y.float() + 1e-4 * _x(n, 1)[:, 0]  # the label itself, plus a little noise
    return x, y


def test_label_column_classification_and_regression() -> None:
    x, y = _label_column_data(600, True)
    xv, yv = _label_column_data(300, True)
    f = facts(x, y, splits=Splits.of(val=(xv, yv)))
    found = run("label_column", f)
    assert codes(found) == [("data_leakage", "warning")] and found[0].evidence["column"] == 2
    assert run("label_column", f, label_column_acc=1.01) == []  # no column can beat a bar above 100%
    x, y = _label_column_data(600, False)
    xv, yv = _label_column_data(300, False)
    f = facts(x, y, loss_kind="mse", splits=Splits.of(val=(xv, yv)))
    assert codes(run("label_column", f)) == [("data_leakage", "info")]  # may be a lag of the target
    assert run("label_column", f, label_column_r=1.01) == []


def test_split_scale_edges() -> None:
    x = _x(200, 6)
    f = facts(x, splits=Splits.of(val=(_x(100, 6, scale=10.0), torch.zeros(100))))
    found = run("split_scale", f)
    assert codes(found) == [("train_eval_mismatch", "warning")]
    assert codes(run("split_scale", f, split_share=1.0)) == []
    assert codes(run("split_scale", facts(x, splits=Splits.of(val=(_x(100, 6), torch.zeros(100)))))) == []


def test_split_structure_edges() -> None:
    base = _x(400, 6)
    x = torch.cat([base[:, :3], base[:, :3] + 0.1 * _x(400, 3)], 1)  # columns 3-5 follow columns 0-2
    v = _x(200, 6)
    val = torch.cat([v[:, :3], v[:, :3] + 0.1 * _x(200, 3)], 1)[:, [0, 1, 2, 4, 5, 3]]  # columns 3-5 rotated
    f = facts(x, splits=Splits.of(val=(val, torch.zeros(200))))
    found = run("split_structure", f)
    assert codes(found) == [("train_eval_mismatch", "warning")]
    assert codes(run("split_structure", f, structure_share=found[0].evidence["share"] + 0.01)) == []


def test_text_splits_edges() -> None:
    by_split = {"train": {"oov_rate": 0.08, "truncated": 0.05}, "test": {"oov_rate": 0.02, "truncated": 0.05}}
    f = facts(text_by_split=by_split)
    assert codes(run("text_splits", f)) == [("train_eval_mismatch", "warning")]
    assert codes(run("text_splits", f, text_train_oov_excess=0.07)) == []


# ------------------------------------------------------------------------------------------------ wiring


@pytest.mark.parametrize(("bs", "expected"), [(7, [("train_eval_mismatch", "warning")]), (8, [])])
def test_norm_batch_edges(bs: int, expected: list[tuple[str, str]]) -> None:
    assert codes(run("norm_batch", facts(batch_size=bs, batchnorm=("bn",)))) == expected
    assert run("norm_batch", facts(batch_size=bs, batchnorm=("bn",)), norm_batch_min=bs) == []


def test_sum_reduction_reports_the_measured_sum() -> None:
    found = run("sum_reduction", facts(sum_batch=32, baseline=35.2))
    assert codes(found) == [("loss_output_mismatch", "info")]
    assert found[0].evidence == {"batch_size": 32, "loss_per_batch_know_nothing": 35.2}
    assert run("sum_reduction", facts()) == []


def test_wiring_softmax_before_cross_entropy() -> None:
    logits = _x(32, 3)
    assert run("wiring", facts(trace=_trace(logits))) == []
    probs = logits.softmax(1)
    assert codes(run("wiring", facts(trace=_trace(probs, nn.Softmax(1))))) == [("loss_output_mismatch", "warning")]


@pytest.mark.parametrize(("range_miss", "expected"), [(0.049, [("loss_output_mismatch", "warning")]), (0.051, [])])
def test_wiring_range_edges(range_miss: float, expected: list[tuple[str, str]]) -> None:
    y = torch.cat([torch.full((5,), 2.0), torch.full((95,), 0.5)])  # 5% of the targets out of a sigmoid's reach
    out = torch.sigmoid(_x(100, 1))[:, 0]
    f = facts(_x(100, 3), y, loss_kind="mse", trace=_trace(out, nn.Sigmoid()))
    assert codes(run("wiring", f, range_miss=range_miss)) == expected


def test_wiring_broadcast_and_collapsed_layers() -> None:
    y, out = _x(64, 1)[:, 0], _x(64, 1)
    f = facts(_x(64, 3), y, loss_kind="mse", trace=_trace(out), broadcast=(2.0, 1.0))
    assert codes(run("wiring", f)) == [("loss_output_mismatch", "warning")]
    assert run("wiring", dataclasses.replace(f, broadcast=(1.0, 1.0))) == []
    found = run("wiring", facts(trace=_trace(_x(32, 3), collapsed=[("0", "1")])))
    assert codes(found) == [("underfitting", "warning")] and found[0].evidence == {"layers": ["0", "1"]}


@pytest.mark.parametrize(("diff", "expected"), [(2e-4, [("train_eval_mismatch", "warning")]), (5e-5, [])])
def test_eval_determinism_edges(diff: float, expected: list[tuple[str, str]]) -> None:
    assert codes(run("eval_determinism", facts(eval_difference=(diff, 1.0)))) == expected
    assert run("eval_determinism", facts(eval_difference=(diff, 1.0)), eval_difference=diff) == []


# ------------------------------------------------------------------------------------------------ init


def _init(**kw: Any) -> Init:
    return Init(**{"layers": [("0.weight", 0.5, 1.0, False, 8)], **kw})


@pytest.mark.parametrize(("gain", "expected"), [(5.1, ["bad_initialization"]), (4.9, [])])
def test_initialization_weight_scale_edges(gain: float, expected: list[str]) -> None:
    f = facts(init=_init(layers=[("0.weight", 1.0, gain, False, 8)]))
    assert [c for c, _ in codes(run("initialization", f))] == expected


def test_initialization_constant_units_and_dead_relus() -> None:
    found = run("initialization", facts(init=_init(layers=[("0.weight", 0.0, 0.0, True, 8)])))
    assert found[0].evidence["layers"][0]["distinct_rows"] == 1
    assert run("initialization", facts(init=_init(dead={"1": 0.9}))) != []  # at dead_at_init: raised
    assert run("initialization", facts(init=_init(dead={"1": 0.89}))) == []


def test_initialization_loss_ratio_edges_and_unnormalized_inputs_explain_it() -> None:
    assert run("initialization", facts(init=_init(), initial_loss=3.1, zero_loss=1.0)) != []
    assert run("initialization", facts(init=_init(), initial_loss=2.9, zero_loss=1.0)) == []
    f = facts(init=_init(), initial_loss=3.1, zero_loss=1.0)
    f.found.append(Finding("unnormalized_inputs", "warning", "raw inputs"))
    assert run("initialization", f) == []


@pytest.mark.parametrize(("last", "expected"), [(0.005, 1), (0.02, 0)])
def test_initialization_tiny_init_edges(last: float, expected: int) -> None:
    init = _init(hidden_gains={"0.weight": 0.1, "2.weight": 0.1}, signal_first=1.0, signal_last=last)
    found = run("initialization", facts(init=init))
    assert len(found) == expected
    if found:
        assert found[0].evidence["small_init"]["small"] == 2


@pytest.mark.parametrize(("share", "severity"), [(0.5, "warning"), (0.49, "info")])
def test_first_gradients_edges(share: float, severity: str) -> None:
    f = facts(gradients=Gradients(["0.weight"], [], share))
    assert codes(run("first_gradients", f)) == [("no_learning", severity)]
    assert run("first_gradients", facts(gradients=Gradients([], [], 0.0))) == []


# ------------------------------------------------------------------------------------------------ the runner


class _Loader:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 16) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size


def _preflight(x: torch.Tensor, y: torch.Tensor, model: nn.Module, **kw: Any) -> Preflight:
    torch.manual_seed(0)
    pre = Preflight(model, nn.CrossEntropyLoss(), _Loader(x, y), kw.pop("val", None), None, torch.device("cpu"),
                    task="classification", **kw)
    pre.run()
    return pre


def test_runner_halts_on_labels_and_reports_in_phase_order() -> None:
    x, y = _x(60, 4, scale=50.0), torch.arange(60) % 3 + 1  # labels 1..3 for 3 outputs; raw inputs
    pre = _preflight(x, y, nn.Linear(4, 3))
    assert pre.halt and codes(pre.findings) == [("label_problem", "error")]
    pre = _preflight(x, y - 1, nn.Linear(4, 3))
    assert not pre.halt and ("unnormalized_inputs", "warning") in codes(pre.findings)
    assert pre.facts.class_counts == [20, 20, 20] and pre.facts.baseline is not None


def test_runner_guards_each_check_and_honours_disable(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _x(60, 4, scale=50.0), torch.arange(60) % 3

    def broken(self: Any, facts: Any, t: Any) -> None:
        raise RuntimeError("a bug in the check")

    monkeypatch.setattr(checks.base, "_FAILED", set())
    monkeypatch.setattr(checks.REGISTRY["labels"], "check", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pre = _preflight(x, y, nn.Linear(4, 3))
    assert any("doctor check labels failed" in str(w.message) for w in caught)
    assert "unnormalized_inputs" in [f.code for f in pre.findings]  # the other checks still ran
    pre = _preflight(x, y, nn.Linear(4, 3), disabled=("input_scale",))
    assert "unnormalized_inputs" not in [f.code for f in pre.findings]


def test_runner_exports_init_abnormal_only_from_the_initialization_verdict() -> None:
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].weight.normal_(0, 10.0)  # std·√fan_in = 20
    x, y = _x(60, 4), torch.arange(60) % 3
    pre = _preflight(x, y, model)
    assert "bad_initialization" in [f.code for f in pre.findings] and pre.facts.init_abnormal
    pre = _preflight(x, y, model, disabled=("initialization",))
    assert not pre.facts.init_abnormal
    assert DEFAULT.init_gain_high < 20
