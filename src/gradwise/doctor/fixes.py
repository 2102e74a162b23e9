"""Fixes that fit the run they are given to.

The rules write fixes for any run: ``optim.lr=<lr*0.1>``, ``schedule.name=warmup_cosine``, ``a wider/deeper model
(model.widths=<model.widths*2>)``. Before a finding is shown, `RunContext.adapt` turns them into advice for *this*
run, with one rule for every fix: a change must differ from the run's current setting and apply to the model in
use. Every ``section.key=value`` in a fix is judged on its own:

* placeholders are filled from the run: ``<lr*F>`` / ``<bs*F>`` from the LR and batch size it trains with,
  ``<section.key*F>`` from the resolved config value (``model.widths`` of a built-in model: the widths it has);
* a value equal to the current one is dropped (the default ``schedule.name=warmup_cosine``, ``train.clip_grad=1.0``);
* a ``model.*`` key of a built-in model counts only when it changes the model: the model is built again on the
  meta device (no memory, no RNG draws) with the new value and compared with the current one, so a key the
  architecture ignores (``model.widths`` of ``logreg``), a default spelled out (``model.norm=batch`` of ``cnn1d``)
  or a value the model rejects is dropped. A size change the model cannot take is moved to the size key it has
  (``widths`` -> ``channels`` / ``hidden_size``), or to ``model.name=mlp`` for a model without hidden layers;
* a user's own ``nn.Module`` (``gradwise.fit``) or a ``model.factory`` has no ``model.*`` architecture keys: they
  become advice on the module (``nn.LeakyReLU in your module``); ``data.*`` keys do not apply to ``fit()``, whose
  data comes as arrays or datasets, and ``fit(): ...`` fixes do not apply to a config run.

What is left of a fix is rewritten: a pure list of assignments keeps the ones that count; advice with an assignment
in its text loses the assignment. So that advice reads well without it, an assignment in advice text stands alone
in its brackets, "a wider/deeper model (model.widths=...)", or ends the text after "or"; one fix speaks to one
interface (a config key, or "fit(): ..." code). A finding whose every fix was dropped says that the run already has
them (or that they build the same model) and points at its causes instead.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from gradwise.doctor.findings import Finding, fill_fixes

Source = Literal["builtin", "factory", "module"]

_SECTIONS = "model|optim|train|schedule|data|loss|doctor"
# section.key=value; a value is a [list], a <placeholder> or a bare token (a number, a name, true/false/null)
ASSIGN = re.compile(rf"(?<![\w.])(?P<key>(?:{_SECTIONS})(?:\.[a-z_][a-z0-9_]*)+)="
                    r"(?P<value>\[[^\]]*\]|<[^>]*>|[^\s;,()\[\]<>]+)")
_COMMENT = r"\s*\([^()]*\)"
_JOINER = r"(?:\s+(?:and|or)\s+|\s*[;,]\s*|\s+)"
# a fix that is nothing but assignments, each with an optional (comment), joined by spaces, 'and', 'or', ';' or ','
_PURE = re.compile(rf"^\s*{ASSIGN.pattern}(?:{_COMMENT})?(?:{_JOINER}{ASSIGN.pattern}(?:{_COMMENT})?)*\s*$"
                   .replace("(?P<key>", "(?:").replace("(?P<value>", "(?:"))
_UNIT = re.compile(rf"{ASSIGN.pattern}(?P<comment>{_COMMENT})?")
_CONFIG_PLACEHOLDER = re.compile(r"^<(?P<key>(?:" + _SECTIONS + r")(?:\.[a-z_][a-z0-9_]*)+)\*(?P<factor>[0-9.]+)>$")

# the size of a built-in model, by the key it takes it from (the first one its builder accepts)
CAPACITY = ("widths", "channels", "hidden_size")
# ModelConfig fields the built-in builders take as arguments (models/build.py hands them over by name); with the
# model's name they are what a factory or a user's own module does not read from the config
ARCH_FIELDS = ("widths", "channels", "kernel_size", "pooling", "hidden_size", "num_layers", "heads", "activation",
               "norm", "dropout")

_INIT_CALLS = {"he_normal": "nn.init.kaiming_normal_", "he_uniform": "nn.init.kaiming_uniform_",
               "xavier_uniform": "nn.init.xavier_uniform_", "xavier_normal": "nn.init.xavier_normal_",
               "orthogonal": "nn.init.orthogonal_", "lecun": "nn.init.kaiming_normal_(..., nonlinearity='linear')"}


@dataclass
class Verdict:
    """What becomes of one assignment: kept as `text`, replaced by `text` (advice that is not an assignment), or
    dropped: the run has that setting already (`same`), the model ignores it (`ignored`), or it does not apply."""

    text: str | None
    same: str | None = None  # the setting the run already has
    ignored: str | None = None  # a setting that builds the same model
    replaced: bool = False


@dataclass
class RunContext:
    """What the fixes are judged against: the resolved config, where the model comes from and, for the model
    builds, the data's shape. Plain data: it is stored in summary.json (doctor.run) for `gradwise doctor DIR`."""

    config: dict[str, Any]  # RunConfig.to_dict()
    source: Source = "module"
    input_shape: list[int] | None = None
    n_outputs: int | None = None
    task: str | None = None
    layers: list[str] = field(default_factory=list)  # module class names (a user's module: what it already has)
    dropout: float = 0.0  # the largest dropout rate in the model
    weight_layers: int = 0  # Linear / conv / recurrent layers: one is a linear model, with no hidden layer to widen
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def for_run(cls, config: Any, model: nn.Module, bundle: Any = None, task: str | None = None) -> RunContext:
        """The context of a run: a model built from the config (`gradwise.train`: a data bundle) or the user's
        own module (`gradwise.fit`)."""
        cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        if bundle is None:
            source: Source = "module"
        else:
            source = "factory" if (cfg.get("model") or {}).get("factory") else "builtin"
        rates = [float(m.p) for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        weighted = sum(1 for m in model.modules() if isinstance(m, nn.Linear | nn.modules.conv._ConvNd | nn.RNNBase))
        shape = getattr(bundle, "input_shape", None)
        return cls(cfg, source, [int(d) for d in shape] if shape is not None else None,
                   getattr(bundle, "n_outputs", None), getattr(bundle, "task", None) or task,
                   sorted({type(m).__name__ for m in model.modules()}), max(rates or [0.0]), weighted)

    def to_dict(self) -> dict[str, Any]:
        """What `from_dict` needs besides the config (which config.yaml holds)."""
        d = asdict(self)
        for key in ("config", "_cache"):
            d.pop(key)
        return d

    @classmethod
    def from_dict(cls, config: dict[str, Any], d: dict[str, Any]) -> RunContext:
        keys = ("source", "input_shape", "n_outputs", "task", "layers", "dropout", "weight_layers")
        return cls(config, **{k: d[k] for k in keys if k in d})

    # ------------------------------------------------------------------------------------------ adapting
    def adapt(self, finding: Finding, lr: float | None = None, batch_size: int | None = None) -> None:
        """Rewrite `finding.fixes` for this run (see the module docstring). Idempotent."""
        if not finding.fixes:
            return
        fixes = fill_fixes(finding.fixes, lr, batch_size)
        out: list[str] = []
        dropped: list[Verdict] = []
        for fix in fixes:
            text = self._fix(fix, dropped)
            if text and text not in out:
                out.append(text)
        if not out:
            # every fix is in place already or does not apply: keep the finding and say where to look instead
            # (settings are written "key: value", never key=value, so judging these fixes again keeps them)
            same = list(dict.fromkeys(v.same for v in dropped if v.same))
            ignored = list(dict.fromkeys(v.ignored for v in dropped if v.ignored))
            name = (self.config.get("model") or {}).get("name")
            said = ([f"this run already has {', '.join(same)}"] if same else []) + \
                ([f"{', '.join(ignored)} would build the same {name} model"] if ignored else [])
            head = "; ".join(said) or "the usual fixes do not apply to this run"
            out = [f"{head}: look for another cause" + (f" ({'; '.join(finding.causes)})" if finding.causes else "")]
        finding.fixes = out

    def _fix(self, fix: str, dropped: list[Verdict]) -> str | None:
        if fix.startswith("fit():"):  # code for fit()'s caller; a config run changes its config
            return fix if self.source == "module" else None
        units = list(ASSIGN.finditer(fix))
        if not units:
            return fix
        verdicts = [self.judge(m.group("key"), m.group("value")) for m in units]
        dropped += [v for v in verdicts if v.text is None]
        if all(v.text == m.group(0) for m, v in zip(units, verdicts, strict=True)):
            return fix
        parts = list(_UNIT.finditer(fix))
        if _PURE.match(fix) and len(parts) == len(units):
            # a list of assignments: keep those that count (a dropped one takes its comment with it), joined as
            # they were
            joiner = fix[parts[0].end():parts[1].start()] if len(parts) > 1 else " "
            if not joiner.strip() and any(v.replaced for v in verdicts):
                joiner = " and "  # advice in words reads as one sentence
            kept = [v.text + (m.group("comment") or "") for m, v in zip(parts, verdicts, strict=True)
                    if v.text is not None]
            return joiner.join(kept) or None
        # advice with assignments in its text: put each verdict in place of its assignment, then tidy the text
        text = fix
        for m, v in sorted(zip(units, verdicts, strict=True), key=lambda mv: -mv[0].start()):
            text = text[:m.start()] + (v.text or "") + text[m.end():]
        return _tidy(text) or None

    def judge(self, key: str, value: str) -> Verdict:
        """The verdict on one assignment `key=value` (placeholders of lr/bs already filled). The run's config does
        not change while it trains, so a verdict is worked out once (it parses values and may build a model) and
        the doctor's later epochs, which repeat the same fixes, read it back."""
        memo = ("judge", key, value)
        if memo not in self._cache:
            self._cache[memo] = self._judge(key, value)
        return self._cache[memo]

    def _judge(self, key: str, value: str) -> Verdict:
        section, _, leaf = key.partition(".")
        if self.source == "module" and section == "data":
            return Verdict(None)  # fit() takes arrays or datasets: the data section is not read
        if section == "model" and "." not in leaf:
            if self.source == "module" or (self.source == "factory" and (leaf in ARCH_FIELDS or leaf == "name")):
                return self._module_advice(leaf, value)
            if self.source == "builtin" and leaf in CAPACITY and leaf not in self._accepted():
                own = next((k for k in CAPACITY if k in self._accepted()), None)
                placeholder = _CONFIG_PLACEHOLDER.match(value)
                if own is not None and placeholder:  # the same relative change of the size this model has
                    leaf, value = own, f"<model.{own}*{placeholder.group('factor')}>"
                elif placeholder and float(placeholder.group("factor")) > 1 and "mlp" in _models():
                    leaf, value = "name", "mlp"  # no hidden layer to widen: a model that has them
                else:
                    return Verdict(None)
                key = f"model.{leaf}"
        filled = self._fill(value)
        if filled is None:
            return Verdict(None)
        current = self.resolved(key)
        new = _parse(filled)
        # shown as "key: value" (no "="), so that advice naming it is never read as a fix again
        setting = f"{key}: {filled}"
        if current is not _UNKNOWN and _same(current, new, key):
            return Verdict(None, same=setting)
        if section == "model" and self.source == "builtin" and (leaf in ARCH_FIELDS or leaf == "name"):
            changed = self._changes_model(leaf, new)
            if changed is False:
                return Verdict(None, ignored=setting)
            if changed is None:
                return Verdict(None)  # a value this model rejects
        return Verdict(f"{key}={filled}")

    # ------------------------------------------------------------------------------------------ values
    def resolved(self, key: str) -> Any:
        """The value this run has for `key` (defaults resolved), or _UNKNOWN."""
        if key == "optim.weight_decay":  # null means the optimizer's own default (AdamW's decoupled 0.01)
            from gradwise.config import OptimConfig

            try:
                return OptimConfig.model_validate(self.config.get("optim") or {}).resolved_weight_decay()
            except ValueError:
                return _UNKNOWN
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return _UNKNOWN
            node = node[part]
        if node is None and key.startswith("model.") and self.source == "builtin":
            measured = self._measure().get(key.split(".", 1)[1])
            return measured if measured is not None else _UNKNOWN
        return node

    def _fill(self, value: str) -> str | None:
        """`<section.key*F>` -> the resolved value times F (each entry of a list); None when unknown."""
        m = _CONFIG_PLACEHOLDER.match(value)
        if not m:
            return value
        current = self.resolved(m.group("key"))
        f = float(m.group("factor"))
        if isinstance(current, list) and current and all(isinstance(v, int | float) for v in current):
            return "[" + ", ".join(str(max(1, round(v * f))) for v in current) + "]"
        if isinstance(current, bool) or not isinstance(current, int | float):
            return None
        if isinstance(current, int):
            return str(max(1, round(current * f)))
        return f"{current * f:.2g}"

    # ------------------------------------------------------------------------------------------ models
    def _accepted(self) -> set[str]:
        """The config fields the built-in model's builder takes."""
        name = str((self.config.get("model") or {}).get("name", "")).strip().lower()
        builder = _models().get(name)
        if builder is None:
            return set(ARCH_FIELDS)
        return {p.name for p in inspect.signature(builder).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def _build(self, model_cfg: dict[str, Any]) -> nn.Module | None:
        """The built-in model of `model_cfg` on the meta device (no memory, no RNG draws), or None when it cannot be
        built (an invalid value, or no data shape known)."""
        if self.input_shape is None or self.n_outputs is None:
            return None
        from gradwise.config import ModelConfig
        from gradwise.models import build_model

        # the init does not change the architecture (and some schemes are slow on meta tensors)
        try:
            cfg = ModelConfig.model_validate({**model_cfg, "init": "default", "pretrained": None})
            with warnings.catch_warnings(), torch.random.fork_rng(devices=[]), torch.device("meta"):
                warnings.simplefilter("ignore")
                return build_model(cfg, tuple(self.input_shape), int(self.n_outputs), self.task or "classification")
        except Exception:
            return None

    def _current_repr(self) -> str | None:
        if "repr" not in self._cache:
            m = self._build(dict(self.config.get("model") or {}))
            self._cache["repr"] = repr(m) if m is not None else None
        return self._cache["repr"]

    def _changes_model(self, leaf: str, value: Any) -> bool | None:
        """Whether setting model.<leaf> to `value` builds another model (None: it cannot be built; True when the
        current model cannot be built here either, so nothing can be said)."""
        key = (leaf, repr(value))
        if key not in self._cache:
            current = self._current_repr()
            if current is None:
                self._cache[key] = True
            else:
                m = self._build({**(self.config.get("model") or {}), leaf: value})
                self._cache[key] = None if m is None else repr(m) != current
        return self._cache[key]

    def _measure(self) -> dict[str, Any]:
        """The architecture values a built-in model chose itself (the config left them at null)."""
        if "measured" not in self._cache:
            m = self._build(dict(self.config.get("model") or {}))
            self._cache["measured"] = _architecture(m) if m is not None else {}
        return self._cache["measured"]

    def _module_advice(self, leaf: str, value: str) -> Verdict:
        """model.<leaf>=<value> as advice on a module the config does not build; dropped when the module has that
        already (`same`, judged from the layer types it has) or there is no such advice."""
        where = "your module"
        v = _parse(value)
        placeholder = _CONFIG_PLACEHOLDER.match(value)
        if leaf in CAPACITY and placeholder and self.weight_layers == 1:
            # a single layer: nothing hidden to widen or narrow; more capacity means a hidden layer
            return self._module_advice("name", "mlp") if float(placeholder.group("factor")) > 1 else Verdict(None)
        if leaf in CAPACITY and placeholder:
            f = float(placeholder.group("factor"))
            what = {"widths": "hidden layers", "channels": "conv channels", "hidden_size": "hidden size"}[leaf]
            return _advice(f"{f:g}x wider {what} in {where}" if f > 1 else f"{what} {f:g}x as wide in {where}")
        if leaf in CAPACITY:
            return _advice(f"{leaf.replace('_', ' ')} {value} in {where}")
        if leaf == "activation" and isinstance(v, str):
            from gradwise.models.layers import ACTIVATIONS

            cls = getattr(ACTIVATIONS.get(v.strip().lower()), "__name__", None)
            if cls is None:
                return _advice(f"the {v} activation in {where}")
            if cls in self.layers:
                return Verdict(None, same=f"nn.{cls} in {where}")
            return _advice(f"nn.{cls} as the activation of {where}")
        if leaf == "norm" and isinstance(v, str):
            kinds = {"batch": "BatchNorm", "layer": "LayerNorm"}
            has = {k: any(name in n for n in self.layers) for k, name in kinds.items()}
            if v == "none":
                return _advice(f"no normalization layers in {where}") if any(has.values()) else \
                    Verdict(None, same=f"no normalization layers in {where}")
            if v in has and has[v]:
                return Verdict(None, same=f"{kinds[v]} in {where}")
            if v in has:
                what = "nn.BatchNorm1d/2d" if v == "batch" else "nn.LayerNorm"
                return _advice(f"{what} after the hidden layers of {where}")
        if leaf == "dropout" and isinstance(v, int | float) and not isinstance(v, bool):
            if math.isclose(float(v), self.dropout):
                return Verdict(None, same=f"dropout {v:g} in {where}")
            return _advice(f"nn.Dropout({v:g}) in {where}" if v > 0 else f"no dropout in {where}")
        if leaf == "init" and isinstance(v, str):
            call = _INIT_CALLS.get(v.strip().lower())
            return _advice(f"initialize {where}'s weights with {call}" if call else
                           f"PyTorch's default init in {where} (drop the custom one)")
        if leaf == "name" and v == "mlp":
            return _advice(f"a hidden layer with a nonlinearity (nn.Linear + nn.ReLU) before the output layer of "
                           f"{where}")
        return Verdict(None)


def _advice(text: str) -> Verdict:
    return Verdict(text, replaced=True)


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


_UNKNOWN: Any = _Unknown()


def _models() -> dict[str, Any]:
    from gradwise.models.build import MODELS

    return MODELS


def _parse(text: str) -> Any:
    from gradwise.config import parse_value

    return parse_value(text)


def _same(a: Any, b: Any, key: str = "") -> bool:
    """Equal as settings: numbers by value, names ignoring case and spelling (he_normal == kaiming_normal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, str) and isinstance(b, str):
        return _canonical(key, a) == _canonical(key, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _canonical(key: str, name: str) -> str:
    from gradwise.errors import ModelError
    from gradwise.models.layers import canonical, check_activation, check_init

    check = {"model.init": check_init, "model.activation": check_activation}.get(key)
    try:
        return check(name) if check else canonical(name)
    except ModelError:
        return canonical(name)


def _architecture(model: nn.Module) -> dict[str, Any]:
    """The size and normalization a built model has: hidden widths (Linear layers but the last), channels per
    stage (conv widths, repeats within a stage folded), hidden size (recurrent or attention width), norm."""
    linears = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    convs: list[int] = []
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd) and (not convs or convs[-1] != m.out_channels):
            convs.append(int(m.out_channels))
    hidden = next((int(getattr(m, "hidden_size", 0) or getattr(m, "embed_dim", 0)) for m in model.modules()
                   if isinstance(m, nn.RNNBase | nn.MultiheadAttention)), None)
    kinds = {type(m).__name__ for m in model.modules()}
    norm = "batch" if any("BatchNorm" in k for k in kinds) else "layer" if "LayerNorm" in kinds else "none"
    return {"widths": linears[:-1] or None, "channels": convs or None, "hidden_size": hidden, "norm": norm}


def _tidy(text: str) -> str:
    """Advice text after an assignment was taken out of it: no empty brackets or dangling joiners."""
    text = re.sub(r"\(\s*(?:or|and|[;,/])?\s*\)", "", text)
    text = re.sub(r"\(\s*[;,/]\s*", "(", text)
    text = re.sub(r"\s*[;,/]\s*\)", ")", text)
    text = re.sub(r"\s+(?:or|and)\s*(?=\)|$)", "", text)
    text = re.sub(r"\s{2,}", " ", text)
    return text.strip(" ;,")
