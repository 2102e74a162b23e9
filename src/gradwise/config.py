"""The run config: one pydantic schema, loaded from YAML, overridden by dotted keys, written back resolved.

A section given as a bare string is shorthand for its name: ``optim: sgd`` means ``optim: {name: sgd}``.
Every error names the key, the value, what was expected and how to fix it (see ``ConfigError``).
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gradwise.errors import ConfigError

# ------------------------------------------------------------------------------------ limits and messages

ECHO_CHARS = 80  # a value or key echoed in a message is cut to this many characters (a 100k value is not a message)
MAX_INT = 2**63 - 1  # torch and numpy hold integers in 64 bits; anything larger overflows deep inside a run
MAX_STR = 4096  # PATH_MAX on Linux: no config string (a path, a name, a pattern) needs more
MAX_NAME = 100  # run names go into directory names (runs/<time>-<name>, studies/<name>)
MAX_PATH_PART = 255  # NAME_MAX: the longest file or folder name, in bytes
SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit (optuna's samplers get the seed as well)
BUILTIN_DATASETS = ("mnist1d", "digits", "iris", "wine", "breast_cancer", "diabetes", "fashion_mnist")
SYSTEM_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"))  # kernel interfaces: nothing may write a run there
# parameter names of typical models; patterns that freeze all of them leave nothing to train
_PARAM_PROBES = ("fc.weight", "features.0.bias", "blocks.1.conv.weight", "head.bias")

# userinfo of a URL (scheme://user:password@host): the password, up to the last '@' before whitespace or a quote so
# that a password holding an unescaped '@' is hidden whole; libpq key=value strings (password=...) too
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@'\"]*:)(?P<pw>[^\s'\"]*)@")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\"[^\"]*\"|[^\s'\"]+)", re.IGNORECASE)


def mask_secrets(text: str, *secrets: str | None) -> str:
    """`text` with every URL password (scheme://user:PASSWORD@host), libpq `password=...` and each of `secrets`
    (e.g. the password of a URL that failed to parse, as a driver may echo it) replaced by ***.

    The one function every message that may hold a storage URL goes through: gradwise's own messages and the text
    of exceptions from SQLAlchemy, psycopg2 or optuna, which may quote the URL they were given.
    """
    from urllib.parse import unquote

    for secret in secrets:
        if secret:
            for form in {secret, unquote(secret)}:
                if len(form) >= 2:  # a one-character password would mask every such letter of the message
                    text = text.replace(form, "***")
    text = _URL_PASSWORD.sub(lambda m: m["head"] + "***@", text)
    return _KV_PASSWORD.sub(lambda m: m["head"] + "***", text)


def url_password(url: str) -> str | None:
    """The password of a URL (its userinfo, or a libpq ?password=... in the query), however malformed the rest of
    the URL is (None: none)."""
    for match in (_URL_PASSWORD.search(url), _KV_PASSWORD.search(url)):
        if match and match["pw"].strip("'\"") not in ("", "***"):
            return match["pw"].strip("'\"")
    return None


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """A value as a message shows it: repr() for non-strings, passwords masked, at most `limit` characters."""
    if value is None or isinstance(value, bool):  # as the user wrote it (YAML), not as Python spells it
        return {None: "null", True: "true", False: "false"}[value]
    text = mask_secrets(value if isinstance(value, str) else repr(value))
    if isinstance(value, str):
        text = repr(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def echo_key(key: str, limit: int = ECHO_CHARS) -> str:
    """A key as a message shows it: printable as is, control characters escaped, cut to `limit` characters."""
    text = key if key.isprintable() else key.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class KeyedValueError(ValueError):
    """A check of a whole section whose message is about one of its keys: the message names that key, not the
    section (pydantic places section-level errors at the section)."""

    def __init__(self, key: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.key, self.value = key, value


def _options(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a type: (int, str) for `int | str`, (X,) for a plain X, Annotated unwrapped."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(o for a in get_args(annotation) for o in _options(a))
    return (annotation,)


def _holds_sections(annotation: Any) -> bool:
    """Whether a field is a section (or a mapping of them, as tune.space is)."""
    for option in _options(annotation):
        for t in (option, *get_args(option)):
            if isinstance(t, type) and issubclass(t, BaseModel):
                return True
    return False


def _bool_problem(value: Any, annotation: Any, depth: int = 0) -> str | None:
    """Why `value` holds a boolean where the type wants a number (pydantic would read true as 1 and false as 0,
    so optim.lr=true trained at 1.0), or None."""
    if depth > 20:
        return None
    options = _options(annotation)
    if isinstance(value, bool):
        numeric = any(o in (int, float) for o in options)
        if numeric and bool not in options and Any not in options:
            return (f"{str(value).lower()} is a boolean, not a number (it is not read as {int(value)}); "
                    "write a number")
        return None
    if isinstance(value, list | tuple):
        for option in options:
            origin, args = get_origin(option), get_args(option)
            if origin in (list, set, frozenset) and args:
                items = [args[0]] * len(value)
            elif origin is tuple and args:
                items = [args[0]] * len(value) if (len(args) == 2 and args[1] is Ellipsis) else list(args)
            else:
                continue
            for i, (item, item_type) in enumerate(zip(value, items, strict=False)):
                problem = _bool_problem(item, item_type, depth + 1)
                if problem:
                    return f"item {i}: {problem}"
    return None


def _first_problem(value: Any, leaf: Callable[[Any], str | None], keys: bool, depth: int = 0) -> str | None:
    """The first problem `leaf` finds in `value` or in the lists and mappings nested in it (their keys too when
    `keys`), or None."""
    if depth > 50:
        return "it is nested too deeply (more than 50 levels)"
    if isinstance(value, dict):
        parts = [*value.keys(), *value.values()] if keys else list(value.values())
    elif isinstance(value, list | tuple | set | frozenset):
        parts = list(value)
    else:
        return leaf(value)
    for part in parts:
        problem = _first_problem(part, leaf, keys, depth + 1)
        if problem:
            return problem
    return None


def _string_leaf(value: Any) -> str | None:
    """Why a string cannot be used (a NUL byte, which no path or C library takes; more than MAX_STR characters)."""
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "it contains a NUL byte (\\x00), which no file name or option can hold; remove it"
    if len(value) > MAX_STR:
        return f"it is {len(value)} characters long, more than the {MAX_STR} any setting needs; shorten it"
    return None


def _number_leaf(value: Any) -> str | None:
    """Why a validated number cannot be used (inf/nan, a denormal, an integer beyond 64 bits). Sections check their
    own fields' ranges."""
    if isinstance(value, BaseModel | bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{value} is not a finite number; write an ordinary number"
        if value != 0 and abs(value) < sys.float_info.min:
            return (f"{value!r} is a denormal number (closer to 0 than {sys.float_info.min:.3g}), which computes "
                    "as 0 or slowly; write 0 or a normal number")
    elif isinstance(value, int) and abs(value) > MAX_INT:
        return f"{len(str(abs(value)))}-digit integers do not fit in 64 bits; write a number below 2**63"
    return None


def _string_problem(value: Any) -> str | None:
    return _first_problem(value, _string_leaf, keys=True)


def _number_problem(value: Any) -> str | None:
    return None if isinstance(value, BaseModel) else _first_problem(value, _number_leaf, keys=False)


def _path_problem(value: str, what: str) -> str | None:
    """Why `value` cannot be a file-system path (NUL bytes and overall length are checked for every string)."""
    for part in Path(value).parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_PATH_PART:
            return (f"a file or folder name in {what} is {len(part.encode('utf-8', 'surrogateescape'))} bytes "
                    f"long, more than the {MAX_PATH_PART} a file system allows; shorten it")
    return None



class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _name_shorthand(cls, value: Any) -> Any:
        # `optim: sgd` reads as `optim: {name: sgd}` for sections that have a name.
        if isinstance(value, str) and "name" in cls.model_fields:
            return {"name": value}
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers_no_bad_strings(cls, value: Any, info: ValidationInfo) -> Any:
        # before pydantic converts: afterwards true is already 1.0 and the field cannot tell
        field = cls.model_fields.get(info.field_name or "")
        annotation = field.annotation if field else Any
        if _holds_sections(annotation):  # a section checks its own keys, so that the message names the key
            return value
        problem = _bool_problem(value, annotation) or _string_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _finite_numbers(cls, value: Any) -> Any:
        # after pydantic converts, so the YAML string "inf" in a float field is caught as well
        problem = _number_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class TokenizerConfig(Section):
    """data.tokenizer: how the text columns of data.text become token ids (fitted on the training split only)."""

    kind: Literal["word", "bpe", "wordpiece", "char"] = Field(
        "word", description="word (whole words), bpe or wordpiece (subwords: fewer unknown tokens), char (characters)")
    vocab_size: int = Field(20000, ge=8, le=1 << 24, description="most tokens to keep, the special ones included")
    min_frequency: int = Field(1, ge=1, description="a token seen fewer times than this in training is unknown")
    lowercase: bool = True
    unicode: Literal["nfkc", "nfc", "nfd", "nfkd", "none"] = Field(
        "nfkc", description="Unicode normalization (nfkc also folds full-width and ligature characters)")
    urls: Literal["keep", "token"] = Field("token", description="token: every URL becomes the one token _url_")
    numbers: Literal["keep", "token"] = Field("keep", description="token: every run of digits becomes _num_")
    max_length: int | Literal["auto"] = Field(
        "auto", description="tokens per text: longer texts are truncated, shorter ones padded; auto: the "
        "length_percentile of the training texts' lengths")
    length_percentile: float = Field(95.0, gt=0.0, le=100.0, description="percentile for max_length: auto")
    file: str | None = Field(None, description="a saved tokenizer.json (Hugging Face tokenizers) to use as it is "
                             "instead of training one")

    @field_validator("max_length")
    @classmethod
    def _length(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 100_000:
            raise ValueError("data.tokenizer.max_length is 'auto' or a number of tokens from 1 to 100000")
        return v


class DataConfig(Section):
    dataset: str = Field("mnist1d", description="built-in name (mnist1d, digits, iris, wine, breast_cancer, "
                         "diabetes, fashion_mnist) or a path to a .csv/.parquet/.npz/.npy file or image folder")
    target: str | None = Field(None, description="target column of a table")
    features: list[str] | None = Field(None, description="feature columns of a table (default: all but target)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    val_file: str | None = None
    test_file: str | None = None
    stratify: bool = True
    folds: int = Field(1, ge=1, description="k-fold cross-validation: one run per fold")
    subsample: float | int | None = Field(None, description="fraction (0-1] or number of training rows to keep")
    classes: list[int | str] | None = Field(None, description="classification: keep only these classes (label "
                                            "values or class names, e.g. [5, 6, 7, 8, 9]), relabelled 0..k-1 in "
                                            "this order; their names are kept")
    drop_duplicates: bool = False
    missing: Literal["none", "drop", "mean", "median", "most_frequent"] = "none"
    outliers: Literal["none", "iqr_clip", "iqr_drop", "zscore_clip", "zscore_drop"] = "none"
    outlier_threshold: float | None = Field(None, gt=0, le=1000, description="IQR multiplier (1.5) or z-score (3.0)")
    clean_categories: bool = True
    scale: Literal["none", "standard", "minmax", "robust"] = "standard"
    one_hot: bool = True
    # "auto", not None, as the default: code that asks `if cfg.scale_target` (use the inverse target transform)
    # must stay true for it, and the transform is the identity whenever no target was scaled.
    scale_target: bool | Literal["auto"] = Field(
        "auto", description="regression targets: standardize them for training (fitted on train); losses are in "
        "standard units, MAE/R² and predictions in the original ones. auto: yes for regression, nothing to do for "
        "classification; true/false force it on/off (classification ignores it, with a note in data_report.json)")
    balance: Literal["none", "oversample", "undersample", "class_weights", "weighted_sampler"] = "none"
    augment: list[str] = Field(default_factory=list, description="e.g. [flip, rotate, translate, noise, shift, scale]")
    augment_strength: float = Field(1.0, ge=0.0, le=100.0)
    num_workers: int = Field(0, ge=0, le=1024)
    options: dict[str, Any] = Field(default_factory=dict, description="dataset-specific arguments")
    text: list[str] | None = Field(None, description="free-text columns of a table, tokenized (see data.tokenizer) "
                                   "into token ids for embedding_bag, gru, lstm, transformer or a model.factory")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    stream: bool | Literal["auto"] = Field(
        "auto", description="Parquet tables (a .parquet file or a folder of them): train in streamed chunks through "
        "pyarrow.dataset instead of loading the table into memory. auto: stream when the table's uncompressed size "
        "is over an eighth of the available memory (the run output says when it streams and why)")
    shuffle_buffer: int = Field(100_000, ge=1, le=100_000_000, description="data.stream: rows shuffled together; "
                                "each epoch also shuffles the order of the files' row groups")
    split_key: str | None = Field(None, description="data.stream: a column whose values decide the val/test rows by a "
                                  "stable hash (with val_fraction/test_fraction), so the splits never change; "
                                  "without it the row's position in the dataset is hashed")

    @field_validator("dataset", "val_file", "test_file")
    @classmethod
    def _paths(cls, v: str | None, info: ValidationInfo) -> str | None:
        problem = _path_problem(v, f"data.{info.field_name}") if v else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("target")
    @classmethod
    def _target_of_a_table(cls, v: str | None, info: ValidationInfo) -> str | None:
        # a built-in dataset brings its own target: data.target would be silently ignored, and a user who set it
        # believes the model predicts that column
        dataset = info.data.get("dataset")
        if v is not None and dataset in BUILTIN_DATASETS:
            raise ValueError(f"the built-in dataset '{dataset}' has its own target, so data.target is not used; "
                             "remove data.target (it names the column to predict of a .csv/.parquet/.npz file)")
        return v

    @field_validator("subsample")
    @classmethod
    def _subsample(cls, v: float | int | None) -> float | int | None:
        if v is None:
            return v
        if v <= 0 or (isinstance(v, float) and v > 1 and not v.is_integer()):
            raise ValueError("data.subsample is a fraction in (0, 1] (e.g. 0.5) or a whole number of rows "
                             "(e.g. 1000)")
        return v

    @field_validator("val_fraction", "test_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        return float(v)

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[int | str] | None) -> list[int | str] | None:
        if v is None:
            return v
        if len(v) < 2:
            raise ValueError("a classifier needs at least two classes; list two or more label values or class "
                             "names, e.g. [5, 6, 7, 8, 9], or remove data.classes to keep every class")
        repeated = sorted({str(c) for c in v if sum(str(d) == str(c) for d in v) > 1})
        if repeated:
            raise ValueError(f"class(es) {', '.join(repeated)} are listed more than once; list each class once")
        return v


class ModelConfig(Section):
    name: str = Field("cnn1d", description="mlp, cnn1d, cnn2d, resnet, rnn, gru, lstm, transformer, logreg, "
                      "embedding_bag (text); or a torchvision/timm architecture, e.g. torchvision:resnet18, "
                      "timm:convnext_atto (pip install \"gradwise[vision]\"; model.options go to its constructor)")
    factory: str | None = Field(None, description='your own model: "package.module:function"')
    widths: list[Annotated[int, Field(ge=1, le=1_000_000)]] | None = Field(
        None, description="hidden layer widths (mlp)")
    channels: list[Annotated[int, Field(ge=1, le=1_000_000)]] | None = Field(
        None, description="conv channels per stage (cnn1d/cnn2d/resnet)")
    kernel_size: int | None = Field(None, ge=1, le=10_000)
    pooling: Literal["max", "avg", "none"] | None = None
    hidden_size: int | None = Field(None, ge=1, le=1_000_000, description="rnn/gru/lstm/transformer width")
    num_layers: int | None = Field(None, ge=1, le=10_000)
    heads: int | None = Field(None, ge=1, le=10_000)
    activation: str = "relu"
    norm: Literal["batch", "layer", "none"] | None = None
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    init: str = Field("default", description="default, xavier_uniform, xavier_normal, he_uniform, he_normal, "
                      "orthogonal, lecun, constant (every weight = model.init_value; biases zero)")
    init_value: float = Field(0.0, description="the weight value of model.init=constant (nn.init.constant_); "
                              "every unit of a layer then computes the same function, which the doctor reports")
    options: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments for the factory")
    # transfer learning
    pretrained: str | None = Field(None, description="checkpoint, state_dict or safetensors file to start from; "
                                   "'weights' with a torchvision:/timm: model: the library's published weights")
    pretrained_strict: bool = False
    embeddings: str | None = Field(None, description="text runs: a word-vector file (GloVe/fastText text format: a "
                                   "token and its numbers per line) to start the token embedding from")
    pretrained_exclude: list[str] = Field(default_factory=list, description="modules/patterns not to load from "
                                          "model.pretrained, e.g. [head] for a fresh head of the same width")
    freeze: list[str] = Field(default_factory=list, description="parameter-name patterns to freeze (fnmatch)")
    unfreeze_after: int | None = Field(None, ge=0, description="unfreeze everything after this many epochs")
    freeze_norm_stats: bool = Field(True, description="batch-norm layers whose parameters are all frozen keep their "
                                    "running statistics (they run in eval mode while training)")
    lr_decay_groups: float | None = Field(None, gt=0, le=1, description="discriminative LRs: earlier blocks get "
                                          "lr × this factor per block")

    @field_validator("embeddings")
    @classmethod
    def _embeddings_path(cls, v: str | None) -> str | None:
        problem = _path_problem(v, "model.embeddings") if v else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("pretrained")
    @classmethod
    def _pretrained_path(cls, v: str | None) -> str | None:
        problem = _path_problem(v, "model.pretrained") if v else None
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _something_trains(self) -> ModelConfig:
        # freeze: ['*'] froze every parameter, and the first backward pass failed inside torch ("element 0 of
        # tensors does not require grad"); gradual unfreezing (unfreeze_after) may start from a frozen model
        if self.freeze and self.unfreeze_after is None and all(
                any(fnmatch.fnmatchcase(name, p) or name.startswith(p.rstrip(".") + ".") for p in self.freeze)
                for name in _PARAM_PROBES):
            raise KeyedValueError("freeze", self.freeze, "these patterns freeze every parameter, so nothing would "
                                  "train; freeze part of the model (e.g. model.freeze=[features]) or set "
                                  "model.unfreeze_after=N to train everything after N epochs")
        return self


class LossConfig(Section):
    name: str = Field("auto", description="auto, mse, mae, huber, cross_entropy, bce_with_logits, nll, hinge. "
                      "auto: mse for regression, cross_entropy for classes (bce_with_logits for a model with one "
                      "output). bce_with_logits on a dataset: two classes only; the built-in models get one output, "
                      "the logit of the second class")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    class_weights: list[float] | Literal["balanced"] | None = None
    huber_delta: float = Field(1.0, gt=0)

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, v: list[float] | str | None) -> list[float] | str | None:
        if isinstance(v, list) and (any(w < 0 for w in v) or not any(w > 0 for w in v)):
            raise ValueError("class weights are numbers >= 0, at least one of them > 0, e.g. [1.0, 3.0] "
                             "(or 'balanced')")
        return v


LR_MAX = 1000.0  # the doctor's divergence demos train at 1000; 1e23 or 1e300 is a typo


class OptimConfig(Section):
    name: str = Field("adamw", description="sgd, adam, adamw, rmsprop, adagrad, adamax, nadam, radam")
    lr: float | Literal["auto"] = Field(3e-3, description="learning rate, or 'auto' to run lr-find first")
    weight_decay: float | None = Field(None, ge=0.0, description="null: 0.01 for adamw (decoupled decay), 0 for the "
                                       "others (their weight_decay is an L2 term in the gradient, which "
                                       "adaptive steps rescale; set it explicitly if you want it)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0, le=1.0)
    l1: float = Field(0.0, ge=0.0, description="explicit L1 penalty strength (added to the loss)")
    l2: float = Field(0.0, ge=0.0, description="explicit L2 penalty strength (added to the loss)")
    decay_norm_and_bias: bool = Field(False, description="apply weight decay to biases and norm parameters")
    fused: bool | None = Field(None, description="fused optimizer kernels: null = wherever torch has one for this "
                               "optimizer and device (sgd/adam/adamw on CPU and CUDA, adagrad on CPU)")

    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.01 if str(self.name).lower() == "adamw" else 0.0

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, v: float | str) -> float | str:
        # (0, LR_MAX]: not (0, 10], since a run that is meant to diverge (the doctor's demos, tests) uses 1000 and
        # auto batch sizes scale the LR up with the batch
        if isinstance(v, float) and not 0 < v <= LR_MAX:
            raise ValueError(f"the learning rate must be a positive number up to {LR_MAX:g}, such as 3e-4 "
                             "(or 'auto')")
        return v

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("both betas are in [0, 1), e.g. [0.9, 0.999]")
        return v


class ScheduleConfig(Section):
    name: str = Field("warmup_cosine", description="constant, step, multistep, exponential, cosine, "
                      "warmup_cosine, warmup_linear, one_cycle, reduce_on_plateau")
    warmup: float = Field(0.05, ge=0.0, le=1e9, description="warmup length: a fraction of all steps (<1) or a "
                          "step count")
    min_lr: float = Field(0.0, ge=0.0, le=1.0, description="floor of cosine/linear decay, as a fraction of the "
                          "peak LR")
    step_size: int = Field(10, ge=1, description="epochs between decays (step)")
    milestones: list[int] = Field(default_factory=lambda: [30, 60, 90])
    gamma: float = Field(0.1, gt=0.0, le=10.0, description="decay factor (step, multistep, exponential, plateau)")
    patience: int = Field(5, ge=0, description="epochs without improvement before reduce_on_plateau cuts the LR")


class EarlyStoppingConfig(Section):
    enabled: bool = True
    monitor: str = Field("val_loss", description="metric name in metrics.jsonl, e.g. val_loss, val_accuracy, "
                         "val_f1, val_balanced_accuracy, val_auroc (two classes), val_r2")
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int = Field(10, ge=0)
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool = True


class EmaConfig(Section):
    """`train.ema`: an exponential moving average of the weights (torch.optim.swa_utils.AveragedModel)."""

    decay: float = Field(0.999, gt=0.0, lt=1.0, description="weight of the average at each optimizer step: "
                         "ema = decay * ema + (1 - decay) * weights; it forgets over about 1 / (1 - decay) steps "
                         "(0.999: ~1000), so pick it below 1 - 1 / (the run's steps / 3) for a short run")


class SwaConfig(Section):
    """`train.swa`: stochastic weight averaging (AveragedModel, SWALR, update_bn of torch.optim.swa_utils)."""

    start: float = Field(0.75, gt=0.0, lt=1.0, description="averaging starts at this fraction of train.epochs "
                         "(0.75 of 40 epochs: from epoch 31 on); the weights at the end of each epoch from there on "
                         "are averaged")
    lr: float | None = Field(None, gt=0.0, le=1e3, description="the LR of the averaging epochs (SWALR anneals to "
                             "it, x each group's lr_scale); null: the LR the schedule has reached when averaging "
                             "starts, held constant")
    anneal_epochs: int = Field(2, ge=0, le=1_000_000, description="epochs over which SWALR moves the LR to swa.lr")
    anneal_strategy: Literal["cos", "linear"] = "cos"


# the default batch size, and the batch the configured LR is taken as right for (train/batch_size.py scales it)
REFERENCE_BATCH = 128


class TrainConfig(Section):
    epochs: int = Field(30, ge=1)
    batch_size: int | Literal["auto"] = Field(
        REFERENCE_BATCH,
        description="mini-batch size, or 'auto': on CPU min(128, training rows // 16); on a GPU the largest "
        "batch that fits (x0.9, a multiple of 8), at most training rows // 16 (16+ steps per epoch), with optim.lr "
        "scaled from batch 128 (linear for sgd, square root for the others)")
    clip_grad: float | None = Field(1.0, gt=0, description="clip threshold; null turns clipping off")
    clip_mode: Literal["norm", "value"] = "norm"
    accumulate: int = Field(1, ge=1, le=1_000_000, description="gradient accumulation: micro-batches per "
                            "optimizer step")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast on a GPU that supports it, fp32 on CPU")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    checkpoint_every: int | None = Field(None, ge=1, description="also checkpoint every N optimizer steps")
    eval_every: int = Field(1, ge=1, description="evaluate on val every N epochs")
    log_every: int = Field(10, ge=1, le=1_000_000, description="record the training loss and LR every N optimizer "
                           "steps (DIR/steps.jsonl); read in batches, so no device sync per step")
    progress: Literal["auto", "bar", "plain", "none"] = "auto"
    compile: bool = False
    deterministic: bool = Field(
        False, description="torch.use_deterministic_algorithms(True), cuDNN deterministic and benchmark off, "
        "CUBLAS_WORKSPACE_CONFIG=:4096:8 when unset, for the run only: GPU runs repeat bit for bit, at some speed "
        "cost; an op without a deterministic implementation stops the run with an error")
    strategy: Literal["auto", "single", "ddp"] = Field(
        "auto", description="auto: data-parallel (DDP) when started by torchrun with WORLD_SIZE > 1 (`gradwise train "
        "CONFIG --nproc N`), else one process; single: one process; ddp: DistributedDataParallel, one process per "
        "device (NCCL on GPUs, Gloo on CPUs). batch_size is per process: a step sees batch_size x processes x "
        "accumulate rows")
    ema: EmaConfig | None = Field(None, description="average the weights as an exponential moving average, e.g. "
                                  "train.ema.decay=0.999: validation, early stopping, best.pt, the test, export and "
                                  "predict use the average; last.pt keeps the raw weights too, for --resume")
    swa: SwaConfig | None = Field(None, description="stochastic weight averaging from train.swa.start of the "
                                  "epochs, e.g. train.swa.start=0.75 train.swa.lr=0.01; BatchNorm statistics are "
                                  "recomputed over the training data at the end")
    activation_checkpointing: bool = Field(
        False, description="recompute each block's activations in the backward pass instead of keeping them "
        "(torch.utils.checkpoint, built-in models' block1..N): less memory, about one more forward pass of time")
    threads: int | Literal["auto", "all"] = Field(
        "auto", description="CPU threads for torch's kernels. auto: torch's count (one per physical core) less the "
        "cores other processes keep busy when the run starts (OMP_NUM_THREADS, when set, wins); all: torch's count; "
        "or a number")

    @model_validator(mode="after")
    def _one_average(self) -> TrainConfig:
        if self.ema is not None and self.swa is not None:
            raise ValueError("train.ema and train.swa both average the weights; keep one, e.g. train.swa=null")
        return self

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, v: int | str) -> int | str:
        # before: pydantic would read true as 1 (and 0.0 as 0, after an int-only check)
        if isinstance(v, bool) or (isinstance(v, int | float) and not 1 <= v <= 1024):
            raise ValueError("train.threads is auto, all or a number of threads from 1 to 1024, e.g. train.threads=1")
        return v

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("the batch size must be a positive whole number such as 64 (or 'auto')")
        return v


class DoctorConfig(Section):
    enabled: bool = True
    repair: bool = False
    max_repairs: int = Field(3, ge=0)
    probe_every: int = Field(50, ge=1, description="run gradient/activation probes every N optimizer steps")
    preflight: bool = True
    nan_guard: bool = True
    halt_on_error: bool = Field(True, description="stop training on a non-finite loss when repair is off")
    thresholds: dict[str, float] = Field(default_factory=dict, description=(
        "a check's threshold by name, e.g. doctor.thresholds.diverge_factor=3 (`gradwise doctor --list` shows "
        "every check with the thresholds it reads)"))
    disable: list[str] = Field(default_factory=list, description=(
        "checks to switch off, by name, e.g. [oscillating_loss] (`gradwise doctor --list` names them)"))


class SearchParam(Section):
    """One dimension of a search space: a range (`{low, high}`, optionally `log` or `step`) or a list of choices.

    Written in YAML as `optim.lr: {low: 1.0e-4, high: 1.0e-1, log: true}` or `model.activation: [relu, gelu]`.
    Integers are searched when the config key is an integer field, when `type: int` is given, or when `low` and
    `high` are both written as whole numbers (and `step`, if any, is too); otherwise floats.
    """

    # int before float in the unions: pydantic keeps a YAML `32` an int, which is how int ranges are recognised
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = Field(None, gt=0)
    choices: list[Any] | None = None
    type: Literal["float", "int", "categorical"] | None = Field(
        None, description="force the kind of parameter (default: from the config key and the bounds)")

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):  # `key: [a, b, c]` means `key: {choices: [a, b, c]}`
            return {"choices": list(value)}
        if not isinstance(value, dict):
            raise ValueError("a search parameter is a range such as {low: 1.0e-4, high: 1.0e-1, log: true} "
                             "or a list of values such as [relu, gelu, tanh]")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SearchParam:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices (a list) or a range (low/high), not both")
            if not self.choices:
                raise ValueError("the list of choices is empty; give at least one value")
            return self
        if self.type == "categorical":
            raise ValueError("type: categorical needs a list of choices")
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high, e.g. {low: 1.0e-4, high: 1.0e-1}")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high}); swap them")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got low={self.low}); raise low or set log: false")
        if self.log and self.step is not None and self.step != 1:
            raise ValueError("a log range cannot have a step; drop step or set log: false")
        return self


class TuneConfig(Section):
    """The `tune:` section read by `gradwise tune` (ignored by `gradwise train`)."""

    space: dict[str, SearchParam] = Field(default_factory=dict,
                                          description="config key -> {low, high, log, step} or [choices]")
    metric: str = Field("val_loss", description="objective: a per-epoch metric (val_loss, val_accuracy, val_f1, "
                        "val_precision, val_recall, val_balanced_accuracy, val_auroc, val_mae, val_r2, ...) or "
                        "parameters / seconds; the best epoch's value counts")
    direction: Literal["auto", "minimize", "maximize"] = Field(
        "auto", description="auto: maximize accuracy/balanced_accuracy/precision/recall/f1/auroc/r2, minimize "
        "losses, errors, parameters, seconds")
    metrics: list[str] | None = Field(None, min_length=1, description="several objectives (multi-objective "
                                      "search, e.g. with nsga2), e.g. [val_accuracy, parameters]")
    directions: list[Literal["auto", "minimize", "maximize"]] | None = Field(
        None, min_length=1, description="one per entry of metrics (default: auto for each)")
    trials: int | None = Field(None, ge=1, description="trials in the whole study, across all workers and re-runs "
                               "(default 20; unlimited when only a timeout is given)")
    timeout: float | None = Field(None, gt=0, description="seconds each invocation may start trials for")
    sampler: Literal["grid", "random", "tpe", "gp", "cmaes", "nsga2"] = "tpe"
    startup_trials: int | None = Field(None, ge=0, description="random trials before tpe, gp or cmaes take over "
                                       "(default: 2 per searched key, capped at a fifth of the trials, at least "
                                       "5, at most half the trials; cmaes: 1)")
    pruner: Literal["none", "median", "successive_halving", "hyperband"] = "median"
    storage: str | None = Field(None, description="default: a journal file in the study directory; or "
                                "sqlite:///study.db, journal:PATH, postgresql://user:pw@host:5432/db")
    study: str | None = Field(None, description="study name (default: the run's name)")
    workers: int = Field(1, ge=1, description="worker processes on this machine")
    test: bool = Field(False, description="each trial restores its best epoch and evaluates the test split (test "
                       "metrics in trials.csv; a checkpoint every epoch, as a plain run); default: no test pass")
    checkpoint_seconds: float = Field(300.0, ge=0, description="a trial writes checkpoints/last.pt at an epoch's end "
                                      "once this many seconds passed since it started or last wrote one (and "
                                      "where Ctrl-C/SIGTERM stops it); a trial killed outright before that is "
                                      "re-run from its start. 0: every epoch")

    @field_validator("space", mode="before")
    @classmethod
    def _space_mapping(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("tune.space maps config keys to ranges or lists, e.g. "
                             "{optim.lr: {low: 1.0e-4, high: 1.0e-1, log: true}, model.activation: [relu, gelu]}")
        return TuneConfig._flatten_space(value)

    @staticmethod
    def _flatten_space(space: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        """`optim: {lr: {low: .., high: ..}}` (nested YAML, or the override tune.space.optim.lr=...) -> `optim.lr`.

        A mapping is a search parameter when it has one of SearchParam's keys, otherwise a level of the key path.
        """
        flat: dict[str, Any] = {}
        for key, spec in space.items():
            name = f"{prefix}{key}"
            if isinstance(spec, dict) and spec and not set(spec) & set(SearchParam.model_fields):
                flat.update(TuneConfig._flatten_space(spec, name + "."))
            else:
                flat[name] = spec
        return flat


TRACKERS = ("tensorboard", "mlflow", "csv")


class MlflowConfig(Section):
    uri: str | None = Field(None, description="tracking URI (http://host:5000, sqlite:///PATH.db, a folder); "
                            "default: $MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db in the working directory")
    experiment: str | None = Field(None, description="MLflow experiment (default: gradwise)")


class TrackConfig(Section):
    """`track:` the trackers that receive the run: `track: [tensorboard, mlflow, csv]` (the list alone), or
    `track: {use: [mlflow], mlflow: {uri: http://host:5000, experiment: NAME}}`."""

    use: list[Literal["tensorboard", "mlflow", "csv"]] = Field(
        default_factory=list, description="tensorboard (DIR/tensorboard/), mlflow (a tracking store), csv "
        "(DIR/metrics.csv)")
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, value: Any) -> Any:
        # `track: [tensorboard, csv]`, `track=tensorboard` or `track=tensorboard,mlflow` on the command line
        if value is None:
            return {}
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()] if value.strip() else []
        if isinstance(value, list | tuple):
            return {"use": list(value)}
        return value

    @field_validator("use")
    @classmethod
    def _once(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))  # naming a tracker twice asks for it once


class RunConfig(Section):
    name: str = Field("run", description="a label for the run: its directory is runs/<timestamp>-<name>")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="random seed, 0 to 2**32-1")
    out: str | None = Field(None, description="run directory (default runs/<timestamp>-<name>)")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    doctor: DoctorConfig = Field(default_factory=DoctorConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)
    tune: TuneConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_shorthand(cls, value: Any) -> Any:  # the run itself has no shorthand
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # the name becomes part of a directory name (runs/<time>-<name>, studies/<name>)
        if len(v) > MAX_NAME:
            raise ValueError(f"a run name is at most {MAX_NAME} characters (it is part of the run directory's "
                             "name); shorten it")
        if "/" in v or "\\" in v or not v.isprintable():
            raise ValueError("a run name cannot hold '/', '\\' or control characters (it is part of the run "
                             "directory's name); to choose the directory, set out=DIR")
        return v

    @field_validator("out")
    @classmethod
    def _out(cls, v: str | None) -> str | None:
        if v is None:
            return v
        problem = _path_problem(v, "out") or _out_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The config as YAML for files and the terminal (config.yaml, `gradwise config`): a password in the MLflow
        tracking URI is masked, so that no secret is written to disk (give it again, or use MLFLOW_TRACKING_URI or
        MLFLOW_TRACKING_PASSWORD, when resuming)."""
        data = self.to_dict()
        uri = data["track"]["mlflow"]["uri"]
        if uri:
            data["track"]["mlflow"]["uri"] = mask_secrets(uri, url_password(uri))
        # libyaml when installed: the same text, 4x faster (this runs at the start of every fit)
        return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)


def _out_problem(out: str) -> str | None:
    """Why a run directory cannot be created at `out` (checked when the config is loaded, not when the first file
    is written after the data was loaded), or None."""
    try:
        path = Path(out).expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop, an unknown ~user: the run's own mkdir reports it
        return None
    if any(path == d or d in path.parents for d in SYSTEM_DIRS):
        return f"{path} is inside a system folder ({', '.join(map(str, SYSTEM_DIRS))}); choose e.g. out=runs/NAME"
    try:
        if path.exists() and not path.is_dir():
            return (f"{path} is an existing file, not a directory; choose a new or existing directory, "
                    "e.g. out=runs/NAME")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    return f"{parent} is a file, so no directory can be made below it; choose e.g. out=runs/NAME"
                break
    except OSError as exc:
        return f"it cannot be checked ({exc.strerror}); choose e.g. out=runs/NAME"
    return None


# --------------------------------------------------------------------------------------------- loading


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        for cand in getattr(ann, "__args__", (ann,)):
            if isinstance(cand, type) and issubclass(cand, BaseModel) and cand is not SearchParam:
                keys.extend(_valid_keys(cand, prefix + name + "."))
    return keys


def _field_path(loc: tuple[Any, ...]) -> tuple[list[str], list[Any]]:
    """Split a pydantic error location into the config key (field names, and the keys of tune.space) and the rest
    (union branch names such as 'float' or 'literal[...]', list positions), walking the schema: a section may have
    a field named like a branch ('int'), so names alone cannot tell them apart."""
    model: Any = RunConfig
    key: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(part, str) \
                and part in model.model_fields:
            key.append(part)
            options = _options(model.model_fields[part].annotation)
            sub = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
            space = [o for o in options if get_origin(o) is dict and get_args(o)[1:] == (SearchParam,)]
            model = sub[0] if sub else ("space" if space else None)
        elif model == "space" and isinstance(part, str):  # a searched config key: tune.space.<optim.lr>
            key.append(part)
            model = SearchParam
        else:
            return key, list(loc[i:])
    return key, []


def _describe(err: dict[str, Any], source: str) -> tuple[str, str | None, str]:
    """(the config key, 'KEY = VALUE' or None for an unknown key, the message) for one pydantic error."""
    key_parts, rest = _field_path(tuple(err["loc"]))
    value = err.get("input")
    kind = err["type"]
    if kind == "extra_forbidden":
        key = ".".join(str(p) for p in [*key_parts, *rest])
        if len(key) > 200:  # no key is this long; difflib on a 100k-character key would take seconds
            return key, None, f"{source}: unknown key '{echo_key(key)}'. See `gradwise config` for every valid key."
        close = difflib.get_close_matches(key, _valid_keys(RunConfig), n=1, cutoff=0.6)
        if not close:  # also try matching only the last part inside its section
            section = key.rsplit(".", 1)[0] + "." if "." in key else ""
            leaf = key.rsplit(".", 1)[-1]
            close = [section + c for c in difflib.get_close_matches(
                leaf, [k[len(section):] for k in _valid_keys(RunConfig) if k.startswith(section)], n=1, cutoff=0.5)]
        hint = f" Did you mean '{close[0]}'?" if close and close[0] != key else ""
        return key, None, f"{source}: unknown key '{echo_key(key)}'.{hint} See `gradwise config` for every valid key."
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, KeyedValueError):  # a section's check about one of its keys
        key_parts, value = [*key_parts, error.key], error.value
    key = ".".join(key_parts) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "model_type":  # `data=iris`-like values for a section that has no name shorthand
        msg = f"'{echo_key(key)}' is a section, not a value: set its keys, e.g. {echo_key(key)}.KEY=VALUE"
    where = [p for p in rest if isinstance(p, int)]
    if where and not isinstance(error, KeyedValueError):  # an item of a list: say which
        msg = f"item {where[0]}: {msg}"
    return key, f"{echo_key(key)} = {echo(value)}", mask_secrets(msg)


def validate_config(data: dict[str, Any] | None, source: str = "config") -> RunConfig:
    """Build a RunConfig from a plain dict, raising ConfigError with one line per problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (data:, model:, optim:, ...), "
                          f"got {type(data).__name__}. Start the file with e.g. 'train:\\n  epochs: 10'.")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        # one line per key: the branches of a union (a number or 'auto') are alternatives of one message
        unknown: list[str] = []
        invalid: dict[str, tuple[str, list[str]]] = {}
        for err in exc.errors():
            key, head, msg = _describe(err, source)
            if head is None:
                if msg not in unknown:
                    unknown.append(msg)
                continue
            first_head, msgs = invalid.setdefault(key, (head, []))
            if msg not in msgs:
                msgs.append(msg)
        lines = unknown + [f"{source}: {head} is invalid: {'; or '.join(msgs)}. Fix the value of '{echo_key(key)}' "
                           "and run again." for key, (head, msgs) in invalid.items()]
        raise ConfigError(_one_line(lines, source)) from None


def _one_line(lines: list[str], source: str, limit: int = 400) -> str:
    """Several problems as one line (the CLI prints one line per error): the first whole, then as many of the
    others as fit in `limit` characters, then how many more there are."""
    def more(n: int) -> str:
        return f" (+{n} more problem{'s' if n > 1 else ''})" if n else ""

    rest = [line.removeprefix(f"{source}: ") for line in lines[1:]]
    text = lines[0]
    if len(text) + len(more(len(rest))) > limit:  # only a very long source path or message gets here
        text = text[: limit - len(more(len(rest))) - 1] + "…"
    for i, line in enumerate(rest):
        candidate = f"{text} Also: {line}"
        if len(candidate) + len(more(len(rest) - i - 1)) > limit:
            return text + more(len(rest) - i)
        text = candidate
    return text


def parse_value(text: str) -> Any:
    """A command-line value is read as YAML, so `3e-4`, `true`, `[64, 64]` and `null` mean what they say."""
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError, TypeError):
        # not YAML (or YAML that the loader itself trips over, e.g. "[[[[..." 1000 levels deep): the text as typed
        return text
    # YAML 1.1 reads 3e-4 as a string (no dot); numbers are what users mean
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to a nested dict (in place), returning it."""
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    for key, value in items:
        if not isinstance(key, str):
            raise ConfigError(f"override key {echo(key)} is not a string; write e.g. optim.lr=3e-4")
        parts = key.split(".")
        if "" in parts:  # `data..dataset`: an empty part would surface as a confusing "unknown key 'data'"
            raise ConfigError(f"override key '{echo_key(key)}' has an empty part (a leading, trailing or doubled "
                              "'.'); write the dotted path with one '.' between names, e.g. data.dataset=iris")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and i == 0 and part == "track":  # `track: mlflow` being extended
                child = {"use": [child]}
            elif isinstance(child, str):  # shorthand section (`optim: sgd`) being extended
                child = {"name": child}
            if isinstance(child, list) and i == 0 and part == "track":  # `track: [mlflow]` being extended
                child = {"use": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                where = echo_key(".".join(parts[: i + 1]))
                raise ConfigError(f"override '{echo_key(key)}': '{where}' is a value, not a section; set it "
                                  f"directly, e.g. {where}=...")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def _split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{echo_key(mask_secrets(text))}' is not of the form key=value; write e.g. "
                          "optim.lr=3e-4 or train.epochs=20")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{echo_key(mask_secrets(text))}' has no key before '='; write e.g. "
                          "optim.lr=3e-4")
    return key, parse_value(raw.strip())


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file '{p}' does not exist. Check the path, or run `gradwise train` "
                          "without a config to train the built-in default.")
    if p.is_dir():
        raise ConfigError(f"config '{p}' is a directory; give the path of a YAML file such as "
                          "examples/mnist1d_cnn.yaml (to resume a run directory use --resume).")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file '{p}' is not valid YAML{where}: "
                          f"{getattr(exc, 'problem', exc)}. Fix the syntax there.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{p}' is not a text file; give a YAML file.") from None
    return data or {}


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML config (or the built-in defaults when path is None) and apply dotted overrides."""
    data = read_yaml(path) if path is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}': expected a mapping of sections (data:, model:, ...), "
                          f"got {type(data).__name__}.")
    if overrides:
        apply_overrides(data, overrides)
    source = str(path) if path is not None else "config"
    return validate_config(data, source)
