"""Using a trained run: evaluate it on a split, or predict new rows with the run's stored preprocessing.

Opening a run directory never runs code from it: the preprocessing is read from preprocess.json (data only; an older
run's preprocess.pkl is refused, not unpickled), the weights with torch.load(weights_only=True), and a model.factory
its config.yaml names is imported only with ``trust_code=True`` or its module in GRADWISE_TRUSTED_MODULES.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradwise.config import RunConfig, load_config
from gradwise.errors import CheckpointError, DataError
from gradwise.train.checkpoint import load_checkpoint, load_weights_into


class LoadedRun:
    """A trained run opened for use: its config, model (weights loaded, eval mode) and stored preprocessing.

    ``bundle`` (the run's data, split and preprocessed as in training) is loaded on first use only: predicting
    never needs it, evaluating does.
    """

    def __init__(self, config: RunConfig, model: nn.Module, preprocessor: Any, checkpoint: Path, run_dir: Path,
                 task: str, bundle: Any = None) -> None:
        self.config = config
        self.model = model
        self.preprocessor = preprocessor
        self.checkpoint = checkpoint
        self.run_dir = run_dir
        self.task = task
        self._bundle = bundle

    @property
    def bundle(self) -> Any:
        if self._bundle is None:
            self._bundle = _load_bundle(self.config, self.run_dir, self.preprocessor)
        return self._bundle


def load_run(run_dir: str | Path, which: str = "auto", *, trust_code: bool = False) -> LoadedRun:
    """Rebuild a run's model from its directory alone: config.yaml, preprocess.json and a checkpoint.

    The training data is not read (a run predicts after its CSV moved, from any directory) unless the run's
    preprocess.json predates the stored model widths; `LoadedRun.bundle` reads it on demand (for eval).
    ``trust_code=True`` allows importing the module of a ``model.factory`` the run's config.yaml names (otherwise
    only modules under GRADWISE_TRUSTED_MODULES prefixes are imported; a CheckpointError says so).
    """
    from gradwise.data.preprocess import LEGACY_PREPROCESS_FILE, PREPROCESS_FILE, Preprocessor, legacy_message
    from gradwise.models import build_model
    from gradwise.models.build import check_run_factory

    path = Path(run_dir)
    if not (path / "config.yaml").exists():
        raise CheckpointError(f"'{path}' is not a gradwise run directory (no config.yaml). Give the directory "
                              "`gradwise train` printed at the end.")
    cfg = load_config(path / "config.yaml")
    if not list((path / "checkpoints").glob("*.pt")) and (path.parent / "study.journal").exists():
        # a tuning trial (gradwise.train.trial) keeps no weights unless it ran past tune.checkpoint_seconds
        raise CheckpointError(f"'{path}' is a tuning trial without a checkpoint: gradwise tune keeps a trial's "
                              "config, metrics and findings, not its weights (tune.checkpoint_seconds). Train it "
                              f"again: gradwise train {path / 'config.yaml'} (the study's best.yaml for the best "
                              "trial), or tune with tune.checkpoint_seconds=0 to keep every trial's weights.")
    # before anything slow or anything imported: the factory is code the directory names
    check_run_factory(cfg.model, path / "config.yaml", trust_code)
    stored = path / PREPROCESS_FILE
    if not stored.exists() and (path / LEGACY_PREPROCESS_FILE).exists():
        # never unpickled: a pickle can run any code
        raise CheckpointError(legacy_message(path / LEGACY_PREPROCESS_FILE))
    es = cfg.train.early_stopping
    if which == "auto":  # the weights the run ended with: best when early stopping restored it, else last
        which = "best" if es.enabled and es.restore_best and (path / "checkpoints" / "best.pt").exists() else "last"
    ckpt = path / "checkpoints" / f"{which}.pt"
    pre = Preprocessor.load(stored) if stored.exists() else None
    bundle = None
    if pre is not None and pre.input_shape is not None and pre.n_outputs is not None:
        input_shape, n_outputs, task = pre.input_shape, pre.n_outputs, pre.task
    else:  # a run written before preprocess.json held the model's widths (or without one): from its data
        bundle = _load_bundle(cfg, path, pre, why="its preprocess.json predates the model widths gradwise now stores "
                              "(`gradwise train --resume` rewrites it)")
        input_shape, n_outputs, task = bundle.input_shape, bundle.n_outputs, bundle.task
        pre = pre if pre is not None else bundle.preprocessor
    model = build_model(cfg.model, input_shape, n_outputs, task, vocab_size=getattr(pre.text, "vocab_size", None)
                        if pre is not None and pre.text is not None else None)
    load_weights_into(model, load_checkpoint(ckpt), ckpt)
    model.eval()
    return LoadedRun(cfg, model, pre, ckpt, path, task, bundle)


def _load_bundle(cfg: RunConfig, path: Path, pre: Any, why: str = "to rebuild its splits") -> Any:
    """The run's data as training prepared it (same seed, splits and fitted preprocessing): for eval.

    A data file given by a relative path is looked up from the working directory, then where training read it (the
    absolute path preprocess.json records); if it is in neither place, a DataError says so and that predict does not
    need it.
    """
    from gradwise.data import load_data
    from gradwise.data.datasets import BUILTIN_DATASETS

    data = cfg.data
    recorded = getattr(pre, "source", None) or {}
    changes: dict[str, Any] = {}
    for key in ("dataset", "val_file", "test_file"):
        value = getattr(data, key)
        builtin = bool(value) and value.strip().lower().replace("-", "_") in BUILTIN_DATASETS
        if not value or builtin or Path(value).expanduser().exists():
            continue
        if key in recorded and Path(recorded[key]).exists():
            changes[key] = recorded[key]  # training's working directory is not this one: the file is still there
            continue
        where = f" (training read '{recorded[key]}')" if key in recorded else ""
        raise DataError(f"this run's data must be re-read ({why}), but data.{key} = '{value}' in "
                        f"'{path / 'config.yaml'}' is not found from '{Path.cwd()}'{where}. Run it where training "
                        "ran or put the file back" + (f"; `gradwise predict {path} ROWS` needs only the run directory."
                                                       if why == "to rebuild its splits" else "."))
    if getattr(pre, "text", None) is not None:
        # eval re-applies the run's own tokenizer (and length) to the re-read splits instead of training a new one
        changes["tokenizer"] = data.tokenizer.model_copy(update={"file": str(path / "tokenizer.json"),
                                                                "max_length": pre.text.max_length})
    if changes:
        data = data.model_copy(update=changes)
    return load_data(data, cfg.seed, fold=_fold_of(path) if cfg.data.folds > 1 else None, loss=cfg.loss.name)


def evaluate_run(run_dir: str | Path, split: str = "test", *, trust_code: bool = False) -> dict[str, float]:
    from gradwise.data.loaders import TensorLoader, eval_batch_size
    from gradwise.recipes import build_loss
    from gradwise.train.metrics import evaluate

    if split not in ("train", "val", "test"):
        raise DataError(f"--split {split!r} is not a split; use train, val or test.")
    run = load_run(run_dir, trust_code=trust_code)
    bundle = run.bundle
    data = getattr(bundle, split, None)
    if data is None and split == "train" and getattr(bundle, "stream", None) is not None:
        raise DataError("this run streamed its training rows from Parquet (data.stream), so they are not held in "
                        "memory to evaluate; use --split val or --split test.")
    loader: Any = None
    if data is None and getattr(bundle, "stream", None) is not None:  # data.stream: too many rows to hold
        from gradwise.data.stream import stream_loaders

        loader = stream_loaders(bundle, 1, 1, run.config.seed)[("train", "val", "test").index(split)]
    if data is None and loader is None:
        raise DataError(f"this run has no {split} split (its data.{split}_fraction is 0); use another --split.")
    loss_fn = build_loss(run.config.loss, bundle.task, bundle.n_outputs, bundle.class_counts)
    # the identity when no target was scaled (classification, data.scale_target=false)
    transform = run.preprocessor.inverse_target
    # batches of the training size: never more memory than training needed (config.yaml records auto's choice)
    batch = eval_batch_size(run.config.train.batch_size if isinstance(run.config.train.batch_size, int) else 128)
    if loader is not None:
        loader.resize(batch)
    else:
        loader = TensorLoader(*data, batch, shuffle=False, transform=getattr(bundle, "normalize", None))
    return evaluate(run.model, loader, loss_fn, torch.device("cpu"), bundle.task,
                    contextlib.nullcontext, target_transform=transform)


def read_inputs(path: str | Path, read_kwargs: dict[str, Any] | None = None) -> pd.DataFrame | np.ndarray:
    """New rows from a file: a table (.csv/.tsv, optionally .gz; .parquet) or an array (.npy, .npz with x).

    ``read_kwargs`` are pandas' CSV options (the run's data.options.read_kwargs: the same separator and encoding as
    the training file). Anything unreadable is a DataError naming the file; nothing in it is executed (no pickle).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"input file '{p}' does not exist; give a .csv, .parquet, .npy or .npz file of new rows.")
    if p.is_dir():
        raise DataError(f"input '{p}' is a folder; give a .csv, .parquet, .npy or .npz file of new rows.")
    name = p.name.lower()
    how = "give a file of new rows with a header line and the training columns (.csv, .parquet, .npy or .npz)"
    try:
        if name.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
            if not name.endswith(".gz"):
                with p.open("rb") as fh:
                    head = fh.read(65536)
                if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):  # (UTF-16 has NULs)
                    raise DataError(f"input file '{p}' is not text (it holds NUL bytes): a binary file, not a CSV; "
                                    f"{how}.")
            kwargs = dict(read_kwargs or {})
            if name.endswith((".tsv", ".tsv.gz")):
                kwargs.setdefault("sep", "\t")
            frame = pd.read_csv(p, **kwargs)
        elif name.endswith((".parquet", ".pq")):
            try:
                frame = pd.read_parquet(p)
            except ImportError:
                raise DataError("reading Parquet needs pyarrow: pip install pyarrow (or give a CSV).") from None
        elif name.endswith(".npy"):
            return _rows_array(np.load(p, allow_pickle=False), p)
        elif name.endswith(".npz"):
            with np.load(p, allow_pickle=False) as z:
                key = next((k for k in ("x", "X", "x_test", "X_test") if k in z.files), None)
                if key is None:
                    raise DataError(f"'{p}' has arrays {z.files}; name the inputs 'x' (or 'X').")
                return _rows_array(z[key], p)
        else:
            raise DataError(f"input file '{p}' has an unsupported type '{p.suffix}'; use .csv, .parquet, .npy or "
                            ".npz.")
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"input file '{p}' is empty (no header line, no rows); {how}.") from None
    except UnicodeDecodeError as exc:
        encoding = (read_kwargs or {}).get("encoding") or "utf-8"
        raise DataError(f"input file '{p}' is not text in the training file's encoding {encoding} ({exc.reason}): a "
                        "binary file, or text in another encoding; save it as a CSV in that encoding.") from None
    except Exception as exc:  # pandas/numpy/zip/parquet parse errors have no common base: each is the file's fault
        detail = " ".join(str(exc).split())[:200]
        raise DataError(f"input file '{p}' could not be read ({type(exc).__name__}: {detail}); {how}.") from None
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"input file '{p}' has a header but no rows; {how}.")
    return frame


def _rows_array(arr: np.ndarray, p: Path) -> np.ndarray:
    if arr.ndim == 0 or len(arr) == 0:
        raise DataError(f"input file '{p}' holds no rows (shape {arr.shape}); give an array of shape (N, ...).")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"input file '{p}' holds a {arr.dtype} array; give numbers (a float or integer array).")
    return arr


@torch.inference_mode()
def predict(run_dir: str | Path, inputs: str | Path | pd.DataFrame | np.ndarray, *,
            trust_code: bool = False, on_warning: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Predictions for new rows: class names (plus class probabilities) or values in the target's units.

    Needs only the run directory (its model and stored preprocessing), never the training data. Columns of a
    table the model did not use (an id, the target) are kept, first, beside the predictions. New rows that differ
    from training (categories it never saw, numbers far outside its range, missing values it fills) are reported,
    one line per column, to ``on_warning`` (default: `warnings.warn` with a DataWarning); rows that cannot be
    predicted are a DataError naming the file and column.
    ``trust_code``: as for `load_run` (allow importing the run's model.factory module).
    """
    from gradwise.data.preprocess import DataWarning, quote

    run = load_run(run_dir, trust_code=trust_code)
    pre = run.preprocessor
    if isinstance(inputs, str | Path):
        where = f"input file '{inputs}'"
        raw = read_inputs(inputs, run.config.data.options.get("read_kwargs"))
    else:
        where = "the input rows"
        raw = inputs
    notes: list[str] = []
    kept = pd.DataFrame()
    if pre.kind == "text":  # raw text: the run's tokenizer.json encodes it as in training
        if not isinstance(raw, pd.DataFrame):
            raise DataError(f"{where}: this model reads text; give a table (.csv/.tsv/.parquet or a DataFrame) with "
                            f"the column(s) {', '.join(map(quote, pre.text.columns))}.")
        x, notes = pre.text.transform_new_rows(raw, where)
        kept = raw[[c for c in raw.columns if c not in pre.text.columns]].reset_index(drop=True)
    elif pre.kind == "table":
        if not isinstance(raw, pd.DataFrame):
            arr = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
            if arr.dtype.kind not in "biufO":  # objects: e.g. a list of mixed values, checked per column below
                raise DataError(f"{where} is a {arr.dtype} array; give numbers (a float or integer array).")
            if arr.ndim != 2 or arr.shape[1] != len(pre.columns):
                raise DataError(f"{where}: expected a 2-D array with {len(pre.columns)} columns (the training "
                                f"columns {', '.join(map(quote, pre.columns))}), got shape {arr.shape}.")
            raw = pd.DataFrame(arr, columns=pre.columns)
        if raw.empty:
            raise DataError(f"{where} has no rows; give at least one row with the training columns.")
        twice = raw.columns[raw.columns.duplicated()]
        if len(twice):
            raise DataError(f"{where} has the column {quote(twice[0])} more than once; give each column once.")
        x, notes = pre.transform_new_rows(raw, where)
        kept = raw[[c for c in raw.columns if c not in pre.columns]].reset_index(drop=True)
    elif isinstance(raw, pd.DataFrame):
        raise DataError(f"{where}: this model was trained on {pre.kind} arrays, not a table; give an .npy/.npz array "
                        f"of shape (N, {', '.join(map(str, pre.sample_shape))}).")
    else:
        x = _array_rows(pre, raw, where)
    for note in notes:
        if on_warning is None:
            warnings.warn(f"{where}: {note}", DataWarning, stacklevel=3)
        else:
            on_warning(f"{where}: {note}")
    return _with_kept(_predictions(run, x), kept)


def _array_rows(pre: Any, raw: Any, where: str) -> torch.Tensor:
    arr = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
    if arr.ndim == 0 or len(arr) == 0:
        raise DataError(f"{where} holds no samples (shape {arr.shape}).")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where} is a {arr.dtype} array; give numbers (a float or integer array).")
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            return pre.transform_array(arr)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None


def _predictions(run: LoadedRun, x: torch.Tensor) -> pd.DataFrame:
    out = run.model(x).float()
    pre = run.preprocessor
    if run.task == "classification":
        if out.shape[-1] == 1:  # one logit (bce_with_logits): its sigmoid is the probability of the second class
            p1 = out.reshape(-1).sigmoid()
            probs = torch.stack([1 - p1, p1], 1)  # the same columns as the softmax path: prob_<class> per class
        else:
            probs = out.softmax(-1)
        idx = probs.argmax(1)
        frame = pd.DataFrame({"prediction": pre.decode_labels(idx)})
        labels = pre.class_names or [str(i) for i in range(probs.shape[1])]
        for j, name in enumerate(labels):
            frame[f"prob_{name}"] = probs[:, j].numpy()
        return frame
    values = pre.inverse_target(out).reshape(len(x), -1).numpy()  # identity when unscaled
    if values.shape[1] == 1:
        return pd.DataFrame({"prediction": values[:, 0]})
    return pd.DataFrame({f"prediction_{i}": values[:, i] for i in range(values.shape[1])})


def _with_kept(predictions: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """The input's other columns (ids, the target) first, then the predictions; a clashing name gets 'input_'."""
    if kept.empty and not len(kept.columns):
        return predictions
    taken = set(predictions.columns)
    renamed = {}
    for c in kept.columns:
        name = c
        while name in taken:
            name = f"input_{name}"
        taken.add(name)
        renamed[c] = name
    return pd.concat([kept.rename(columns=renamed), predictions], axis=1)


def _fold_of(path: Path) -> int | None:
    """The fold a cross-validation run trained on, from its data_report.json (or its fold-K directory name)."""
    report = path / "data_report.json"
    if report.exists():
        import json

        try:
            fold = json.loads(report.read_text()).get("split", {}).get("fold")
            if fold is not None:
                return int(fold)
        except (ValueError, AttributeError):
            pass
    if path.name.startswith("fold-") and path.name[5:].isdigit():
        return int(path.name[5:])
    return None
