"""The doctor's checks one at a time: the registry and its declarations, each family on synthetic facts and histories
(threshold edges on both sides), the runner's guard, doctor.disable / doctor.thresholds, the repair decisions and
the README's table of checks."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from gradwise.cli import main
from gradwise.doctor import checks, repair
from gradwise.doctor.checks.curves import CurveFacts
from gradwise.doctor.findings import CODES, Code, Finding, Fix, _schema_field, render_fixes
from gradwise.doctor.fixes import ASSIGN
from gradwise.doctor.preflight import Facts, Preflight
from gradwise.doctor.probes import ProbeRecord
from gradwise.doctor.rules import activation_findings, curve_findings, over_regularization, probe_findings
from gradwise.doctor.thresholds import DEFAULT, NAMES, configured
from gradwise.errors import ConfigError

T = DEFAULT


def cli(argv: list[str]) -> int:
    """`gradwise ...` in this process: its exit status."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0)
README = Path(__file__).resolve().parents[1] / "README.md"


def _codes(found: list[Finding]) -> dict[str, str]:
    return {f.code: f.severity for f in found}


def _rows(L: list[float], **cols: list[Any]) -> list[dict[str, Any]]:
    rows = [{"epoch": i + 1, "step": 10 * (i + 1), "train_loss": v, "lr": 0.1} for i, v in enumerate(L)]
    for key, values in cols.items():
        for r, v in zip(rows, values, strict=True):
            if v is not None:
                r[key] = v
    return rows


FACTS = Facts(loss_kind="ce", baseline=1.0, initial_loss=1.0)


# --------------------------------------------------------------------------------------------- the registry


def test_every_check_is_declared_and_every_code_has_a_check() -> None:
    names = [c.name for c in checks.REGISTRY.values()]
    assert len(names) == len(set(names))
    for c in checks.REGISTRY.values():
        assert c.code in CODES and all(a in CODES for a in c.also)
        assert c.family in checks.FAMILIES and c.stage in checks.STAGES and c.measures
        assert set(c.thresholds) <= NAMES, c.name
        if c.runs_in:  # a check still carried out by an older method: that method exists
            owner, _, method = c.runs_in.partition(".")
            from gradwise.doctor.doctor import Doctor

            assert hasattr({"Preflight": Preflight, "Doctor": Doctor}[owner], method), c.runs_in
    raised = {c.code for c in checks.REGISTRY.values()} | {a for c in checks.REGISTRY.values() for a in c.also}
    assert raised == set(CODES)
    assert {c.family for c in checks.REGISTRY.values()} == set(checks.FAMILIES)


def test_every_declared_fix_names_a_real_config_key() -> None:
    for c in checks.REGISTRY.values():
        for text in render_fixes(c.fixes):
            for m in ASSIGN.finditer(text):
                assert _schema_field(m.group("key")) is not None, f"{c.name}: {text}"


def test_declared_fixes_are_data() -> None:
    """A config change in a declared fix is a Fix (validated against the schema at import), never an assignment
    written into a string; strings are advice in words only."""
    for c in checks.REGISTRY.values():
        for fix in (*c.fixes, *getattr(c, "target_fixes", ())):
            if isinstance(fix, str):  # (a value left to the user, `data.augment=[...]`, is no Fix)
                assert all(m.group("value") == "[...]" for m in ASSIGN.finditer(fix)), f"{c.name}: {fix!r}"
    from gradwise.doctor.findings import both, either

    assert both(Fix("model.activation", "relu"), Fix("model.init", "he_normal")).render() == \
        "model.activation=relu model.init=he_normal"
    assert either(Fix("optim.name", "adamw", note="decoupled"), Fix("optim.weight_decay", 0)).render() == \
        "optim.name=adamw (decoupled) or optim.weight_decay=0"
    with pytest.raises(ValueError, match="not a config key"):
        both(Fix("model.activation", "relu"), Fix("model.activations", "relu"))


def test_a_fix_is_checked_against_the_config_schema() -> None:
    assert Fix("optim.lr", scale=0.1).render() == "optim.lr=<lr*0.1>"
    assert Fix("train.clip_grad", 1.0).render() == "train.clip_grad=1.0"
    assert Fix("doctor.repair", True, note="why").render() == "doctor.repair=true (why)"
    assert Fix("model.widths", scale=2).render() == "model.widths=<model.widths*2>"
    with pytest.raises(ValueError, match="not a config key"):
        Fix("optim.learning_rate", scale=0.1)
    with pytest.raises(ValueError):
        Fix("train.clip_grad", "a lot")
    with pytest.raises(ValueError):
        Fix("optim.lr")  # neither a value nor a scale


def test_readme_table_lists_every_check() -> None:
    text = README.read_text()
    block = re.search(r"<!-- doctor-checks:start[^>]*-->\n(.*?)\n<!-- doctor-checks:end -->", text, re.S)
    assert block is not None, "README.md has no doctor-checks table"
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", block.group(1), re.M))
    missing = {c for c in checks.REGISTRY} - listed
    assert not missing, f"checks missing from README's table: {sorted(missing)}"
    assert block.group(1) == checks.markdown_table(), "README's table is stale: paste checks.markdown_table()"


def test_doctor_list_prints_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["doctor", "--list"]) == 0
    out = capsys.readouterr().out
    for c in checks.REGISTRY.values():
        assert re.search(rf"^{c.name}  \[", out, re.M), c.name
    assert "diverge_factor=2" in out


# --------------------------------------------------------------------------------------------- the runner


class _Broken(checks.Check):
    name, code, family, stage, measures = "broken", Code.PLATEAU, "curves", "epoch", "nothing"

    def check(self, facts: Any, t: Any) -> Finding | None:
        raise ZeroDivisionError("a bug in one check")


class _Fine(checks.Check):
    name, code, family, stage, measures = "fine", Code.PLATEAU, "curves", "epoch", "always"

    def check(self, facts: Any, t: Any) -> Finding | None:
        return self.finding("found", {}, epoch=1)


def test_a_bug_in_one_check_loses_only_that_check() -> None:
    with pytest.warns(RuntimeWarning, match="doctor check broken failed"):
        found = checks.run([_Broken, _Fine], CurveFacts.of(_rows([1.0]), FACTS), T)
    assert [f.message for f in found] == ["found"]
    with pytest.raises(ZeroDivisionError):
        checks.run([_Broken], CurveFacts.of(_rows([1.0]), FACTS), T, guard=False)


def test_disable_switches_one_check_off() -> None:
    L = [1.0, 0.4, 0.3, 0.61, 0.62]
    assert "diverging_loss" in _codes(curve_findings(_rows(L), FACTS))
    left = _codes(curve_findings(_rows(L), FACTS, disabled=["diverging_loss"]))
    assert "diverging_loss" not in left and "lr_too_high" in left  # the LR check of the same event still runs


def test_thresholds_are_configurable_by_name() -> None:
    L = [1.0, 0.4, 0.3, 0.61, 0.62]
    assert "diverging_loss" not in _codes(curve_findings(_rows(L), FACTS, t=configured({"diverge_factor": 3})))
    assert configured({"osc_window": 8}).osc_window == 8
    with pytest.raises(ConfigError, match="doctor.thresholds.diverge_factr"):
        configured({"diverge_factr": 3})
    with pytest.raises(ConfigError, match="integer"):
        configured({"osc_window": 2.5})


def test_config_keys_reach_the_doctor(tmp_path: Path) -> None:
    base = ["train", "data.dataset=iris", "train.epochs=1", "model.name=mlp", "train.progress=none"]
    assert cli([*base, f"out={tmp_path / 'a'}", "doctor.disable=[no_such_check]"]) == 2
    assert cli([*base, f"out={tmp_path / 'b'}", "doctor.thresholds.no_such_threshold=1"]) == 2
    assert cli([*base, f"out={tmp_path / 'c'}", "doctor.disable=[plateau]", "doctor.thresholds.diverge_factor=3"]) == 0


# --------------------------------------------------------------------------------------------- curves


def test_diverging_loss_edges() -> None:
    best = 0.3
    up = T.diverge_factor * best
    assert "diverging_loss" in _codes(curve_findings(_rows([1.0, 0.4, best, up + 0.01, up + 0.02]), FACTS))
    assert "diverging_loss" not in _codes(curve_findings(_rows([1.0, 0.4, best, up - 0.01, up - 0.01]), FACTS))


def test_oscillation_edges() -> None:
    swing = [0.8, 0.5, 0.8, 0.5, 0.8, 0.5]  # moves of 0.3: >= 20% and >= 10% of S
    assert "oscillating_loss" in _codes(curve_findings(_rows(swing), FACTS))
    calm = [0.8, 0.78, 0.8, 0.78, 0.8, 0.78]  # 2.5% moves
    assert "oscillating_loss" not in _codes(curve_findings(_rows(calm), FACTS))


def test_no_learning_needs_its_epochs() -> None:
    flat = [1.0] * T.no_learning_epochs
    assert "no_learning" in _codes(curve_findings(_rows(flat), FACTS))
    assert "no_learning" not in _codes(curve_findings(_rows(flat[:-1]), FACTS))


def test_a_plateau_of_a_bouncing_loss_never_says_raise_the_lr() -> None:
    stalled = [1.0, 0.9, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    plateau = next(f for f in curve_findings(_rows(stalled), FACTS) if f.code == "plateau")
    assert "optim.lr=<lr*3>" in plateau.fixes
    # tiny batches: the epoch loss swings by 40% and then stalls high -- a larger batch, not a larger LR
    noisy = [1.0, 0.7, 1.0, 0.7, 1.0, 0.7, 0.7, 0.7, 0.7, 0.7]
    found = curve_findings(_rows(noisy), FACTS)
    assert {"oscillating_loss", "plateau"} <= set(_codes(found))
    plateau = next(f for f in found if f.code == "plateau")
    assert not any(re.search(r"optim\.lr=<lr\*(3|10)>", x) for x in plateau.fixes)
    assert "train.batch_size=<bs*2>" in plateau.fixes


def _memorized(counts: list[int]) -> list[Finding]:
    facts = dataclasses.replace(FACTS, class_counts=counts, val_baseline=1.0)
    L = [0.8, 0.5, 0.3, 0.1, 0.05, 0.02]
    V = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]  # never below the know-nothing loss
    return curve_findings(_rows(L, val_loss=V), facts, final=True)


def test_label_problem_needs_classes_too_big_for_little_data_to_explain() -> None:
    enough = T.label_min_class_rows
    assert "label_problem" in _codes(_memorized([enough, enough, enough]))
    few = _codes(_memorized([enough - 1, enough, enough]))
    assert "label_problem" not in few and few.get("overfitting") == "warning"


# --------------------------------------------------------------------------------------------- capacity


def _bottleneck(units: int) -> list[Finding]:
    facts = dataclasses.replace(FACTS, narrowest=("fc1", units), n_outputs=10)
    L = [0.9, 0.6, 0.5, 0.45, 0.45, 0.45]  # settled between under_low and high_loss
    rows = _rows(L, val_loss=[0.9, 0.6, 0.5, 0.5, 0.5, 0.5], train_loss_eval_mode=[None] * 5 + [0.45])
    return curve_findings(rows, facts, final=True)


def test_bottleneck_edges() -> None:
    assert _codes(_bottleneck(8)).get("underfitting") == "warning"  # 8 units for 10 classes
    assert "underfitting" not in _codes(_bottleneck(9))  # classes - 1 units are enough for the logits' rank


def test_high_final_loss_is_underfitting_only_once_settled() -> None:
    assert "underfitting" in _codes(curve_findings(_rows([1.0, 0.76, 0.74, 0.72, 0.71]), FACTS, final=True))
    # still falling >= 10% over the last 3 epochs: "train longer", not a finding
    assert "underfitting" not in _codes(curve_findings(_rows([1.0, 0.9, 0.85, 0.8, 0.7]), FACTS, final=True))


# --------------------------------------------------------------------------------------------- steps


def _rec(step: int, upd: float, grad: float = 0.1, loss: float = 1.0, lr: float = 1e-3) -> ProbeRecord:
    return ProbeRecord(step, 1, lr, grad, {"a": grad, "b": grad}, {"a": 1.0, "b": 1.0}, {"a": upd, "b": upd},
                       loss=loss, peak_lr=lr)


STEPS = (0, 1, 2, 4, 8, 16, 32)


def test_lr_too_high_edges() -> None:
    high = [_rec(s, T.update_high * 1.2) for s in STEPS]
    assert _codes(probe_findings(high, None, [])).get("lr_too_high") == "warning"
    ok = [_rec(s, T.update_high * 0.8) for s in STEPS]
    assert "lr_too_high" not in _codes(probe_findings(ok, None, []))


def test_lr_too_low_edges() -> None:
    low = [_rec(s, T.update_low * 0.5) for s in STEPS]
    assert "lr_too_low" in _codes(probe_findings(low, None, []))
    ok = [_rec(s, T.update_low * 2) for s in STEPS]
    assert "lr_too_low" not in _codes(probe_findings(ok, None, []))


def test_exploding_and_vanishing_gradients() -> None:
    grow = [_rec(s, 1e-3, grad=0.1 * (T.explode_growth * 2 if s >= 4 else 1)) for s in STEPS]
    assert "exploding_gradients" in _codes(probe_findings(grow, None, []))
    steady = [_rec(s, 1e-3) for s in STEPS]
    assert "exploding_gradients" not in _codes(probe_findings(steady, None, []))

    def depth(s: int, ratio: float) -> ProbeRecord:  # three layers: two are too shallow to vanish through
        return ProbeRecord(s, 1, 1e-3, 1.0, {"a": ratio, "m": 0.5, "b": 1.0}, {"a": 1.0, "m": 1.0, "b": 1.0},
                           {"a": 1e-3, "m": 1e-3, "b": 1e-3})

    facts = Facts(layer_order=["a", "m", "b"])
    assert "vanishing_gradients" in _codes(probe_findings([depth(s, T.vanish_depth / 2) for s in STEPS], facts, []))
    assert "vanishing_gradients" not in _codes(probe_findings([depth(s, T.vanish_depth * 2) for s in STEPS], facts,
                                                              []))


# --------------------------------------------------------------------------------------------- activations


def test_dead_units_need_two_epoch_ends() -> None:
    dead = {"relu1": {"dead": T.dead_share, "units": 8}}
    alive = {"relu1": {"dead": T.dead_share - 0.01, "units": 8}}
    assert "dead_units" in _codes(activation_findings([dead, dead], 2, 20))
    assert "dead_units" not in _codes(activation_findings([alive, dead], 2, 20))
    assert "dead_units" not in _codes(activation_findings([dead], 1, 10))


def test_saturated_units_edges() -> None:
    sat = {"tanh1": {"saturated": T.sat_share, "sat_mean": 0.1, "units": 8, "kind": "tanh"}}
    ok = {"tanh1": {"saturated": T.sat_share - 0.01, "sat_mean": T.sat_layer - 0.01, "units": 8, "kind": "tanh"}}
    assert "saturated_units" in _codes(activation_findings([sat, sat], 2, 20))
    assert "saturated_units" not in _codes(activation_findings([ok, ok], 2, 20))


def test_over_regularization_edges() -> None:
    def recs(reg: float) -> list[ProbeRecord]:
        return [dataclasses.replace(_rec(s, 1e-3), reg_ratio=reg) for s in STEPS]

    held = _rows([1.0, 0.9, 0.8, 0.8])  # ends at 80% of the know-nothing loss
    found = _codes(over_regularization(recs(T.reg_ratio * 2), FACTS, held, None))
    assert found.get("over_regularization") == "warning"
    assert "over_regularization" not in _codes(over_regularization(recs(T.reg_ratio / 2), FACTS, held, None))
    assert "over_regularization" not in _codes(over_regularization(recs(T.reg_ratio * 2), FACTS,
                                                                   _rows([1.0, 0.3, 0.1, 0.05]), None))


# --------------------------------------------------------------------------------------------- repair


def _f(code: str, severity: str = "warning", **ev: Any) -> Finding:
    return Finding(code, severity, "m", ev, epoch=1, step=1)  # type: ignore[arg-type]


def test_repair_decisions() -> None:
    s = repair.RepairState(epoch=0, epochs=20, clip_grad=None)
    assert repair.after_probes([_f("exploding_gradients")], s, T).clip_grad == 1.0
    clipped = dataclasses.replace(s, clip_grad=1.0)
    assert repair.after_probes([_f("exploding_gradients")], clipped, T) is None  # bounded: nothing to do
    high = repair.after_probes([_f("lr_too_high", update_to_weight=0.5)], s, T)
    assert high is not None and high.to == "start" and high.lr_factor == pytest.approx(T.lr_target_ratio / 0.5)
    assert repair.after_probes([_f("lr_too_low", update_to_weight=1e-5)], dataclasses.replace(s, cut_lr=True),
                               T) is None  # never undo the doctor's own LR cut
    nan = repair.after_nonfinite(7, s)
    assert nan.lr_factor == 0.1 and nan.clip_grad == 1.0


def test_repair_never_raises_the_lr_of_a_bouncing_loss() -> None:
    s = repair.RepairState(epoch=1, epochs=20, clip_grad=None, recent_updates=(1e-4, 1e-4, 1e-4))
    plateau = _f("plateau", early=True)
    raise_lr = repair.after_epoch({"plateau": plateau}, [plateau], s, T, 2)
    assert raise_lr is not None and raise_lr.lr_factor == 3.0
    bouncing = [plateau, _f("oscillating_loss")]
    assert repair.after_epoch({"plateau": plateau}, bouncing, s, T, 2) is None
    big_steps = dataclasses.replace(s, recent_updates=(T.plateau_small_step,))
    assert repair.after_epoch({"plateau": plateau}, [plateau], big_steps, T, 2) is None


# --------------------------------------------------------------------------------------------- layering

SRC = Path(__file__).resolve().parents[1] / "src" / "gradwise"


def _imports(path: Path, module_level: bool = False) -> set[str]:
    """The gradwise modules a file imports (anywhere in it, or at module level only), by dotted name."""
    import ast

    tree = ast.parse(path.read_text())
    nodes = []
    for node in tree.body if module_level else [tree]:
        if module_level and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if module_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        nodes.extend(ast.walk(node))
    out: set[str] = set()
    for n in nodes:
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 and n.module.startswith("gradwise"):
            subs = [f"{n.module}.{a.name}" for a in n.names
                    if (SRC.parent / f"{n.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                    or (SRC.parent / f"{n.module}.{a.name}".replace(".", "/")).is_dir()]
            out.update(subs)
            if len(subs) < len(n.names):
                out.add(n.module)
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names if a.name.startswith("gradwise"))
    return out


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_layers_data_below_the_loop_below_the_doctor() -> None:
    for f in (SRC / "data").rglob("*.py"):
        bad = {m for m in _imports(f) if m.startswith(("gradwise.train.loop", "gradwise.train.batch_size",
                                                        "gradwise.doctor", "gradwise.api"))}
        assert not bad, f"{f.name} imports {bad}"
    for f in (SRC / "train").rglob("*.py"):
        assert not {m for m in _imports(f) if m.startswith("gradwise.doctor")}, f.name
    assert "gradwise.data.prepare" not in _imports(SRC / "data" / "datasets.py")  # prepare imports datasets


def test_no_import_cycles_and_no_empty_packages() -> None:
    files = {_module(f): f for f in SRC.rglob("*.py")}
    graph = {m: {d for d in _imports(f, module_level=True) if d in files and d != m} for m, f in files.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(path[path.index(d):] + [d])}")
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    for init in SRC.rglob("__init__.py"):
        assert any(p.suffix == ".py" and p.name != "__init__.py" for p in init.parent.iterdir()) \
            or init.read_text().strip(), f"empty package {init.parent}"


def test_a_finding_made_from_the_enum_is_a_plain_string_code() -> None:
    found = curve_findings(_rows([1.0, 0.4, 0.3, 0.61, 0.62]), FACTS)
    assert found and all(type(f.code) is str for f in found)  # findings.jsonl, YAML and reprs as before


# --------------------------------------------------------------------------------------------- text runs


def _text_preflight(disabled: tuple[str, ...] = (), **overrides: float) -> list[Finding]:
    """Pre-flight on iris rows with a text run's data report: training tokens 6 points more often unknown than the
    test tokens (a tokenizer fitted on the test rows), test texts 30 points more often cut than training's."""
    import types

    import torch
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    loader = types.SimpleNamespace(x=torch.tensor(x, dtype=torch.float32), y=torch.tensor(y))
    report = {"text": {"by_split": {"train": {"oov_rate": 0.08, "truncated": 0.05},
                                    "test": {"oov_rate": 0.02, "truncated": 0.35}}}}
    torch.manual_seed(0)
    pre = Preflight(torch.nn.Linear(4, 3), torch.nn.CrossEntropyLoss(), loader, None, None, torch.device("cpu"),
                    task="classification", bundle=types.SimpleNamespace(report=report),
                    thresholds=configured(overrides), disabled=disabled)
    pre.run()
    return [f for f in pre.findings if "texts" in f.message]


def test_text_split_check_is_declared_switchable_and_reads_its_thresholds() -> None:
    assert checks.REGISTRY["text_splits"].stage == "preflight"
    found = _text_preflight()
    assert [f.severity for f in found] == ["warning", "info"], found  # the OOV gap and the truncation gap
    assert "knows the test texts better" in found[0].message
    assert _text_preflight(disabled=("text_splits",)) == []
    assert [f.severity for f in _text_preflight(text_train_oov_excess=0.1)] == ["info"]
    assert [f.severity for f in _text_preflight(text_truncation_gap=0.5)] == ["warning"]
