"""The search space: `tune.space` turned into optuna distributions, checked against the run config up front.

Each entry maps a dotted config key (the same keys `gradwise train` accepts as overrides) to a range or a list.
The optuna parameter is named after the key, so trials.csv has columns such as `params_optim.lr`.
"""

from __future__ import annotations

import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import BaseModel

from gradwise.config import RunConfig, SearchParam, _valid_keys, apply_overrides, validate_config
from gradwise.errors import ConfigError

Kind = Literal["float", "int", "categorical"]
_PRIMITIVE = (str, int, float, bool, type(None))
# keys a search cannot sensibly change: where the trial writes, and the search itself
_FORBIDDEN = ("out", "tune")


@dataclass
class Param:
    """One searched config key with its optuna distribution."""

    key: str
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[Any] = field(default_factory=list)  # the values as written (lists, dicts allowed)

    # optuna stores only None/bool/int/float/str choices; others (e.g. model.widths: [[64], [128, 128]]) are
    # stored as their JSON text and turned back into the value when the trial's config is built
    def _encode(self, value: Any) -> Any:
        return value if isinstance(value, _PRIMITIVE) else json.dumps(value)

    @property
    def encoded_choices(self) -> list[Any]:
        return [self._encode(c) for c in self.choices]

    def decode(self, stored: Any) -> Any:
        if self.kind != "categorical":
            return stored
        for choice in self.choices:
            if self._encode(choice) == stored:
                return choice
        return stored

    def distribution(self) -> BaseDistribution:
        if self.kind == "categorical":
            return CategoricalDistribution(self.encoded_choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                 step=float(self.step) if self.step is not None else None)

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this parameter for a trial and return the config value (decoded)."""
        if self.kind == "categorical":
            return self.decode(trial.suggest_categorical(self.key, self.encoded_choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def grid_values(self) -> list[Any] | None:
        """The finite set of values a grid search walks through (None for a continuous range)."""
        if self.kind == "categorical":
            return self.encoded_choices
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        # rounded so that 0.1 + 2 * 0.1 is written 0.3 (and still lies on optuna's step grid)
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.key} in {self.choices}"
        scale = ", log" if self.log else (f", step {self.step}" if self.step else "")
        return f"{self.key} in [{self.low}, {self.high}{scale}] ({self.kind})"


def _field_at(key: str) -> Any:
    """The type annotation of a dotted config key, or None for keys inside free-form `options` dicts."""
    model: type[BaseModel] = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        info = model.model_fields.get(part)
        if info is None:
            return None
        ann = info.annotation
        if i == len(parts) - 1:
            return ann
        nested = [a for a in _union_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return None


def _union_args(ann: Any) -> tuple[Any, ...]:
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        return typing.get_args(ann)
    return (ann,)


def _is_section(key: str) -> bool:
    ann = _field_at(key)
    return any(isinstance(a, type) and issubclass(a, BaseModel) for a in _union_args(ann)) if ann else False


def _check_key(key: str) -> None:
    valid = _valid_keys(RunConfig)
    root = key.split(".")[0]
    if root in _FORBIDDEN:
        raise ConfigError(f"tune.space: '{key}' cannot be searched (the search sets the run directory itself and "
                          "does not tune its own settings). Remove it from tune.space.")
    if key in valid:
        if _is_section(key):
            raise ConfigError(f"tune.space: '{key}' is a whole section; search one of its keys instead, e.g. "
                              f"'{key}.name' (see `gradwise config`).")
        return
    # keys inside free-form dicts (model.options.depth, data.options.num_samples) are the factory's business
    for prefix in ("model.options.", "data.options."):
        if key.startswith(prefix) and len(key) > len(prefix):
            return
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if not close and "." in key:
        section, leaf = key.rsplit(".", 1)
        inside = [k[len(section) + 1:] for k in valid if k.startswith(section + ".")]
        close = [f"{section}.{c}" for c in difflib.get_close_matches(leaf, inside, n=1, cutoff=0.5)]
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"tune.space: unknown config key '{key}'.{hint} The space's keys are the dotted keys of the "
                      "run config (see `gradwise config`), e.g. optim.lr or model.activation.")


def _kind(key: str, spec: SearchParam) -> Kind:
    if spec.choices is not None:
        return "categorical"
    if spec.type is not None:
        return spec.type
    # the config field decides when it can: train.epochs is an int even if written 2.0, optim.lr a float
    args = _union_args(_field_at(key)) if _field_at(key) is not None else ()
    accepts_float = float in args
    accepts_int = int in args
    if accepts_int and not accepts_float:
        return "int"
    if accepts_float and not accepts_int:
        return "float"
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (spec.low, spec.high))
    if whole and (spec.step is None or float(spec.step).is_integer()):
        return "int"
    return "float"


def build_space(cfg: RunConfig) -> list[Param]:
    """Turn cfg.tune.space into Params, checking every key and every extreme value against the run config."""
    assert cfg.tune is not None
    if not cfg.tune.space:
        raise ConfigError("tune.space is empty: there is nothing to search. Add at least one config key, e.g.\n"
                          "tune:\n  space:\n    optim.lr: {low: 1.0e-4, high: 1.0e-1, log: true}\n"
                          "    model.activation: [relu, gelu, tanh]")
    params = []
    for key, spec in cfg.tune.space.items():
        _check_key(key)
        kind = _kind(key, spec)
        if kind == "int":
            for name in ("low", "high", "step"):
                v = getattr(spec, name)
                if v is not None and not float(v).is_integer():
                    raise ConfigError(f"tune.space.{key}: {key} is searched as an integer but {name}={v} is not a "
                                      f"whole number. Use whole numbers, or write type: float.")
            low, high, step = int(spec.low), int(spec.high), int(spec.step) if spec.step else None
            if step and (high - low) % step:
                high = low + (high - low) // step * step  # optuna would do the same, with a warning
            params.append(Param(key, "int", low, high, spec.log, step))
        elif kind == "float":
            params.append(Param(key, "float", float(spec.low), float(spec.high), spec.log,
                                float(spec.step) if spec.step is not None else None))
        else:
            params.append(Param(key, "categorical", choices=list(spec.choices or [])))
    _check_values(cfg, params)
    return params


def _check_values(cfg: RunConfig, params: list[Param]) -> None:
    """Every choice and both ends of every range must give a valid run config: a typo fails now, not in trial 7."""
    base = cfg.to_dict()
    base["tune"] = None
    for p in params:
        values = p.choices if p.kind == "categorical" else [p.low, p.high]
        for value in values:
            data = apply_overrides(json.loads(json.dumps(base)), {p.key: value})
            try:
                validate_config(data, "tune.space")
            except ConfigError as exc:
                raise ConfigError(f"tune.space.{p.key}: the value {value!r} does not make a valid run config:\n"
                                  f"{exc}\nChange the range or the choices of '{p.key}'.") from None


def grid_space(params: list[Param]) -> dict[str, list[Any]]:
    """The grid for GridSampler; every parameter must have a finite set of values."""
    grid = {}
    for p in params:
        values = p.grid_values()
        if values is None:
            raise ConfigError(f"tune.sampler=grid needs a finite set of values for every parameter, but '{p.key}' "
                              f"is a continuous range [{p.low}, {p.high}]. Give it a step "
                              f"({p.key}: {{low: {p.low}, high: {p.high}, step: ...}}) or a list of values "
                              f"({p.key}: [{p.low}, {p.high}]), or use another sampler (tpe, random, gp).")
        grid[p.key] = values
    return grid


def grid_size(params: list[Param]) -> int:
    return math.prod(len(v) for v in grid_space(params).values())


def trial_overrides(params: list[Param], stored: dict[str, Any]) -> dict[str, Any]:
    """Config overrides for a trial's stored optuna params (decoded: JSON text back to lists)."""
    by_key = {p.key: p for p in params}
    return {k: (by_key[k].decode(v) if k in by_key else v) for k, v in stored.items()}
