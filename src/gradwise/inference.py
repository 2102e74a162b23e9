"""Using a trained run: evaluate it on a split, or predict new rows with the run's stored preprocessing.

Opening a run directory never runs code from it: the preprocessing is read from preprocess.json (data only; an older
run's preprocess.pkl is refused, not unpickled), the weights with torch.load(weights_only=True), and a model.factory
its config.yaml names is imported only with ``trust_code=True`` or its module in GRADWISE_TRUSTED_MODULES.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradwise.config import RunConfig, load_config
from gradwise.errors import CheckpointError, DataError
from gradwise.train.checkpoint import load_checkpoint


@dataclass
class LoadedRun:
    config: RunConfig
    model: nn.Module
    preprocessor: Any
    bundle: Any
    checkpoint: Path


def load_run(run_dir: str | Path, which: str = "auto", *, trust_code: bool = False) -> LoadedRun:
    """Rebuild a run's data (same seed, same splits, preprocessing fitted on the same train rows) and model.

    ``trust_code=True`` allows importing the module of a ``model.factory`` the run's config.yaml names (otherwise
    only modules under GRADWISE_TRUSTED_MODULES prefixes are imported; a CheckpointError says so).
    """
    from gradwise.data import load_data
    from gradwise.data.preprocess import LEGACY_PREPROCESS_FILE, PREPROCESS_FILE, Preprocessor, legacy_message
    from gradwise.models import build_model
    from gradwise.models.build import check_run_factory

    path = Path(run_dir)
    if not (path / "config.yaml").exists():
        raise CheckpointError(f"'{path}' is not a gradwise run directory (no config.yaml). Give the directory "
                              "`gradwise train` printed at the end.")
    cfg = load_config(path / "config.yaml")
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
    # the loss decides the target encoding (one 0/1 column for a one-logit bce_with_logits model), so the model is
    # rebuilt with the width it was trained with
    bundle = load_data(cfg.data, cfg.seed, fold=_fold_of(path) if cfg.data.folds > 1 else None, loss=cfg.loss.name)
    model = build_model(cfg.model, bundle.input_shape, bundle.n_outputs, bundle.task)
    model.load_state_dict(load_checkpoint(ckpt)["model"])
    model.eval()
    pre = bundle.preprocessor
    if stored.exists():  # the preprocessing saved with the run is the one that must be applied
        pre = Preprocessor.load(stored)
    return LoadedRun(cfg, model, pre, bundle, ckpt)


def evaluate_run(run_dir: str | Path, split: str = "test", *, trust_code: bool = False) -> dict[str, float]:
    from gradwise.data.loaders import TensorLoader
    from gradwise.recipes import build_loss
    from gradwise.train.metrics import evaluate

    run = load_run(run_dir, trust_code=trust_code)
    data = getattr(run.bundle, split, None) if split in ("train", "val", "test") else None
    if split not in ("train", "val", "test"):
        raise DataError(f"--split {split!r} is not a split; use train, val or test.")
    if data is None:
        raise DataError(f"this run has no {split} split (its data.{split}_fraction is 0); use another --split.")
    loss_fn = build_loss(run.config.loss, run.bundle.task, run.bundle.n_outputs, run.bundle.class_counts)
    # the identity when no target was scaled (classification, data.scale_target=false)
    transform = run.preprocessor.inverse_target
    return evaluate(run.model, TensorLoader(*data, 256, shuffle=False), loss_fn, torch.device("cpu"), run.bundle.task,
                    contextlib.nullcontext, target_transform=transform)


def read_inputs(path: str | Path) -> pd.DataFrame | np.ndarray:
    p = Path(path)
    if not p.exists():
        raise DataError(f"input file '{p}' does not exist; give a .csv, .parquet, .npy or .npz file of new rows.")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(p)
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(p)
        except ImportError:
            raise DataError("reading Parquet needs pyarrow: pip install pyarrow (or give a CSV).") from None
    if suffix == ".npy":
        return np.load(p, allow_pickle=False)
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            key = next((k for k in ("x", "X", "x_test", "X_test") if k in z.files), None)
            if key is None:
                raise DataError(f"'{p}' has arrays {z.files}; name the inputs 'x' (or 'X').")
            return z[key]
    raise DataError(f"input file '{p}' has an unsupported type '{suffix}'; use .csv, .parquet, .npy or .npz.")


@torch.inference_mode()
def predict(run_dir: str | Path, inputs: str | Path | pd.DataFrame | np.ndarray, *,
            trust_code: bool = False) -> pd.DataFrame:
    """Predictions for new rows: class names (plus class probabilities) or values in the target's units.

    ``trust_code``: as for `load_run` (allow importing the run's model.factory module).
    """
    run = load_run(run_dir, trust_code=trust_code)
    raw = read_inputs(inputs) if isinstance(inputs, str | Path) else inputs
    x = run.preprocessor.transform_frame(raw) if isinstance(raw, pd.DataFrame) else run.preprocessor.transform_array(
        raw)
    out = run.model(x).float()
    if run.bundle.task == "classification":
        if out.shape[-1] == 1:  # one logit (bce_with_logits): its sigmoid is the probability of the second class
            p1 = out.reshape(-1).sigmoid()
            probs = torch.stack([1 - p1, p1], 1)  # the same columns as the softmax path: prob_<class> per class
        else:
            probs = out.softmax(-1)
        idx = probs.argmax(1)
        names = run.preprocessor.decode_labels(idx)
        frame = pd.DataFrame({"prediction": names})
        labels = run.preprocessor.class_names or [str(i) for i in range(probs.shape[1])]
        for j, name in enumerate(labels):
            frame[f"prob_{name}"] = probs[:, j].numpy()
        return frame
    values = run.preprocessor.inverse_target(out).reshape(len(x), -1).numpy()  # identity when unscaled
    if values.shape[1] == 1:
        return pd.DataFrame({"prediction": values[:, 0]})
    return pd.DataFrame({f"prediction_{i}": values[:, i] for i in range(values.shape[1])})


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
