"""Data: built-in and file datasets prepared on the train split only, and fast loaders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradwise.data.loaders import DatasetLoader, TensorLoader, UserLoader, eval_batch_size, make_loader

if TYPE_CHECKING:
    from gradwise.config import RunConfig


def __getattr__(name: str) -> Any:
    # the dataset code pulls in pandas/sklearn: import it only when asked
    if name in ("load_data", "DataBundle"):
        from gradwise.data import prepare

        return getattr(prepare, name)
    if name == "build_augment":
        from gradwise.data.augment import build_augment

        return build_augment
    raise AttributeError(name)


def make_loaders_from_bundle(bundle: Any, cfg: RunConfig) -> tuple[Any, Any, Any]:
    """In-memory tensors -> loaders batched by indexing (no per-item collation)."""
    from gradwise.config import REFERENCE_BATCH

    # 'auto' starts here and is resized once the model is on its device (api._auto_batch)
    bs = cfg.train.batch_size if cfg.train.batch_size != "auto" else REFERENCE_BATCH
    if getattr(bundle, "stream", None) is not None:  # data.stream: training batches streamed from Parquet
        from gradwise.data.stream import stream_loaders

        return stream_loaders(bundle, bs, eval_batch_size(bs), cfg.seed)
    x, y = bundle.train
    weights = getattr(bundle, "sample_weights", None)
    pixels = getattr(bundle, "normalize", None)  # uint8 image splits: converted per batch (PixelNormalize)
    train = TensorLoader(x, y, bs, shuffle=True, seed=cfg.seed, weights=weights, transform=pixels, drop_single=True)
    val, test = (None if split is None else TensorLoader(*split, eval_batch_size(bs, split[0]), shuffle=False,
                                                          transform=pixels)
                 for split in (bundle.val, bundle.test))
    return train, val, test


__all__ = ["DatasetLoader", "TensorLoader", "UserLoader", "make_loader", "make_loaders_from_bundle"]
