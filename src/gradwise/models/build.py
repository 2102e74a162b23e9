"""``build_model``: turn a ``ModelConfig`` plus the data's sample shape into an ``nn.Module`` that outputs logits."""

from __future__ import annotations

import importlib
import inspect
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from gradwise.config import ModelConfig
from gradwise.errors import CheckpointError, ConfigError, ModelError
from gradwise.models import architectures as arch
from gradwise.models.hub import build_hub_model, is_hub_name
from gradwise.models.layers import apply_init, check_activation, check_init, unknown_name_error

ModelBuilder = Callable[..., nn.Module]

MODELS: dict[str, ModelBuilder] = {
    "logreg": arch.logreg,
    "mlp": arch.mlp,
    "cnn1d": arch.cnn1d,
    "cnn2d": arch.cnn2d,
    "resnet": arch.resnet,
    "rnn": arch.rnn,
    "gru": arch.gru,
    "lstm": arch.lstm,
    "transformer": arch.transformer,
    "embedding_bag": arch.embedding_bag,
}
# the models that read token ids (a data.text run): embedding_bag only does; the sequence models do with a vocab
TEXT_MODELS = ("embedding_bag", "rnn", "gru", "lstm", "transformer")

# Sample ranks (dims without the batch) each model accepts, what they mean, and what to use instead otherwise.
_SHAPES: dict[str, tuple[tuple[int, ...], str]] = {
    "cnn1d": ((1, 2), "(L,) for a 1-channel signal or (C, L) for C channels"),
    "cnn2d": ((2, 3), "(C, H, W) images, or (H, W) for one channel"),
    "resnet": ((2, 3), "(C, H, W) images, or (H, W) for one channel"),
    "rnn": ((1, 2), "(T, F) sequences, or (L,) read as L steps of 1 feature"),
    "gru": ((1, 2), "(T, F) sequences, or (L,) read as L steps of 1 feature"),
    "lstm": ((1, 2), "(T, F) sequences, or (L,) read as L steps of 1 feature"),
    "transformer": ((1, 2), "(T, F) sequences, or (L,) read as L tokens of 1 feature"),
}
_SUGGEST_BY_RANK = {1: "mlp or cnn1d", 2: "cnn1d (channels × length), gru or transformer (steps × features)",
                    3: "cnn2d or resnet"}

# ModelConfig fields that are handed to the builders as keyword arguments (when the builder takes them).
_ARCH_FIELDS = ("widths", "channels", "kernel_size", "pooling", "hidden_size", "num_layers", "heads", "activation",
                "norm", "dropout")

TASKS = ("classification", "regression")


def available_models() -> list[str]:
    """The built-in model names."""
    return list(MODELS)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameter values (frozen ones are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_shape(name: str, input_shape: tuple[int, ...]) -> None:
    if not input_shape or any(int(d) < 1 for d in input_shape):
        raise ModelError(f"model '{name}': input_shape {input_shape} is not a valid sample shape; expected the "
                         f"shape of one sample without the batch dim, e.g. (40,) or (1, 28, 28).")
    if name not in _SHAPES:
        return
    ranks, meaning = _SHAPES[name]
    if len(input_shape) not in ranks:
        fits = _SUGGEST_BY_RANK.get(len(input_shape), "mlp (flattens any shape)")
        raise ModelError(f"model '{name}' expects samples shaped {meaning}, but the data's samples have shape "
                         f"{tuple(input_shape)}. Fix: use model.name {fits} for this data, or reshape the data.")


def _signature_params(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """The keyword names ``fn`` accepts and whether it also takes ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins/C callables have no signature
        return set(), True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


# A run directory's config.yaml is data someone else may have written: its model.factory is imported (code runs)
# only for modules listed here (comma-separated prefixes: "mypkg" allows mypkg and mypkg.nets) or with trust_code.
TRUSTED_MODULES_ENV = "GRADWISE_TRUSTED_MODULES"


def trusted_module_prefixes() -> list[str]:
    """The module prefixes GRADWISE_TRUSTED_MODULES allows, e.g. ``mypkg,mypkg2`` -> ["mypkg", "mypkg2"]."""
    return [p.strip() for p in os.environ.get(TRUSTED_MODULES_ENV, "").split(",") if p.strip()]


def module_is_trusted(module: str) -> bool:
    """Whether GRADWISE_TRUSTED_MODULES names `module` or a package above it (a prefix must end at a dot)."""
    return any(module == p or module.startswith(p + ".") for p in trusted_module_prefixes())


def check_run_factory(cfg: ModelConfig, config_path: str | Path, trust_code: bool = False) -> None:
    """Refuse to build a ``model.factory`` named by a run directory's config unless the user allows its module.

    Importing the factory's module runs its code (``subprocess:getoutput`` would run a command), and a run directory
    is shared data: opening it (eval, predict, resume) must not run code it names. Allowed: ``trust_code=True``, or
    the module under a prefix in GRADWISE_TRUSTED_MODULES. Built-in models (no factory) need nothing.
    """
    if not cfg.factory or trust_code:
        return
    module = cfg.factory.partition(":")[0].strip()
    if module and module_is_trusted(module):
        return
    top = module.split(".")[0] or module
    raise CheckpointError(f"'{config_path}' names model.factory '{cfg.factory}', which would import module "
                          f"'{module}' and run its code; opening a run directory does not run code the directory "
                          f"names. If you trust this run and that module, set {TRUSTED_MODULES_ENV}={top} "
                          "(comma-separated module prefixes), or pass trust_code=True (the CLI's --trust-code).")


def _import_factory(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelError(f"model.factory '{spec}' is not of the form 'package.module:function'. "
                         f"Fix: write the module path, a colon, then the function name, e.g. 'mypkg.nets:make_net'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"model.factory '{spec}': cannot import module '{module_name}' ({exc}). Fix: check the "
                         f"spelling and that the module is importable (installed, or on PYTHONPATH / in the working "
                         f"directory).") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise ModelError(f"model.factory '{spec}': module '{module_name}' has no attribute '{attr}'. "
                             f"Callables it defines: {', '.join(public[:20]) or 'none'}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"model.factory '{spec}': '{attr}' is a {type(obj).__name__}, not a function or class. "
                         f"Fix: point model.factory at a callable that returns an nn.Module.")
    return obj


def _build_from_factory(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int, task: str,
                        vocab_size: int | None = None) -> nn.Module:
    assert cfg.factory is not None
    fn = _import_factory(cfg.factory)
    kwargs: dict[str, Any] = dict(cfg.options)
    names, _ = _signature_params(fn)
    # Only explicitly named parameters get the shape info: a **kwargs factory often forwards everything to a
    # constructor that would reject unexpected names.
    # a text run's factory also gets vocab_size (its inputs are (N, L) int64 ids, 0 = padding)
    for key, value in (("input_shape", tuple(input_shape)), ("n_outputs", n_outputs), ("task", task),
                       ("vocab_size", vocab_size)):
        if key in names and (key != "vocab_size" or value is not None):
            kwargs[key] = value
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        raise ModelError(f"model.factory '{cfg.factory}' could not be called with {sorted(kwargs)} ({exc}). "
                         f"Fix: make model.options match the function's parameters.") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"model.factory '{cfg.factory}' returned a {type(model).__name__}, not a torch.nn.Module. "
                         f"Fix: return the model instance (e.g. `return MyNet(...)`).")
    return model


def _build_builtin(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int,
                   vocab_size: int | None = None) -> nn.Module:
    name = cfg.name.strip().lower()
    if name not in MODELS:
        raise unknown_name_error("model", cfg.name, list(MODELS), "name")
    builder = MODELS[name]
    if vocab_size is not None and name not in TEXT_MODELS:
        raise ModelError(f"model '{name}' cannot read token ids (this run has data.text); use one of "
                         f"{', '.join(TEXT_MODELS)}, or your own model.factory.")
    _check_shape(name, input_shape)
    accepted, _ = _signature_params(builder)
    accepted -= {"input_shape", "n_outputs", "vocab_size"}  # vocab_size comes from the data, never from options
    kwargs: dict[str, Any] = {} if vocab_size is None else {"vocab_size": int(vocab_size)}
    ignored: list[str] = []
    for field in _ARCH_FIELDS:
        value = getattr(cfg, field)
        if field in accepted:
            if value is not None:
                kwargs[field] = value
        elif value is not None and field not in ("activation", "dropout", "norm"):
            ignored.append(f"{field}={value!r}")
    if ignored:
        warnings.warn(f"model '{name}' does not use {', '.join(ignored)}; these settings are ignored.",
                      UserWarning, stacklevel=3)
    if name == "logreg" and cfg.dropout > 0:
        warnings.warn("model 'logreg' has no hidden layer, so model.dropout is ignored.", UserWarning, stacklevel=3)
    extras = sorted(accepted - set(_ARCH_FIELDS))
    for key, value in cfg.options.items():
        if key in ModelConfig.model_fields:
            raise ModelError(f"model.options.{key} duplicates the config field model.{key}. "
                             f"Fix: set model.{key} instead.")
        if key not in accepted:
            raise ModelError(f"model '{name}' has no option '{key}' (model.options). "
                             f"Options it takes: {', '.join(extras) or 'none'}. Fix: remove or rename it.")
        kwargs[key] = value
    for key in ("widths", "channels"):
        if key in kwargs and (not kwargs[key] or any(int(v) < 1 for v in kwargs[key])):
            raise ModelError(f"model.{key}={kwargs[key]!r}: expected a non-empty list of positive integers, "
                             f"e.g. [32, 64].")
    try:
        return builder(tuple(int(d) for d in input_shape), n_outputs, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"model '{name}' cannot be built for input shape {tuple(input_shape)} with "
                         f"{kwargs}: {exc}") from exc


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int, task: str,
                vocab_size: int | None = None) -> nn.Module:
    """Build the model described by ``cfg`` for samples of ``input_shape`` (no batch dim).

    The model maps a batch (N, *input_shape) to (N, n_outputs) raw outputs (logits for classification, no softmax).
    ``cfg.factory`` ("package.module:function") takes precedence over ``cfg.name``.
    ``cfg.init`` is applied to every Linear/Conv (and recurrent/attention) weight after building, biases zeroed.
    ``vocab_size`` (a text run's tokenizer): the samples are (L,) int64 token ids, 0 = padding.
    """
    if task not in TASKS:
        raise ModelError(f"task '{task}' is not supported; expected one of {', '.join(TASKS)}.")
    if int(n_outputs) < 1:
        raise ModelError(f"n_outputs={n_outputs}: a model needs at least one output (number of classes for "
                         f"classification, number of targets for regression).")
    input_shape = tuple(int(d) for d in input_shape)
    # Check names before building so that a typo fails fast with a helpful message.
    activation = check_activation(cfg.activation)
    init = check_init(cfg.init)
    if cfg.init_value != 0.0 and init != "constant":
        # a value no scheme reads would be silently dropped: say which switch it belongs to
        raise ConfigError(f"model.init_value={cfg.init_value} is only used by model.init=constant, but model.init is "
                          f"'{cfg.init}'; set model.init=constant or remove model.init_value.")
    if cfg.factory:
        model = _build_from_factory(cfg, input_shape, int(n_outputs), task, vocab_size)
    elif is_hub_name(cfg.name):  # torchvision:resnet18, timm:convnext_atto
        model = build_hub_model(cfg.name, input_shape, int(n_outputs), cfg.options)
    else:
        model = _build_builtin(cfg.model_copy(update={"activation": activation}), input_shape, int(n_outputs),
                               vocab_size)
    apply_init(model, init, activation, cfg.init_value)
    return model
