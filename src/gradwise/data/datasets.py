"""Where the raw data comes from: built-in datasets and user files, read into a `TableSource` or `ArraySource`.

Nothing here splits, cleans or scales; `gradwise.data.prepare` does that. Every loader works offline:
mnist1d is generated (never downloaded) and cached, the scikit-learn sets are bundled with scikit-learn,
and fashion_mnist is read from the IDX files Debian's `dataset-fashion-mnist` package installs.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gzip
import hashlib
import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from gradwise.config import DataConfig
from gradwise.data.preprocess import names, quote
from gradwise.errors import DataError

SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
BUILTIN_DATASETS = ("mnist1d", *SKLEARN_DATASETS, "fashion_mnist")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
ARRAY_SUFFIXES = (".npz", ".npy")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]

Kind = Literal["table", "signal", "image"]


@dataclass
class TableSource:
    """A data frame with named target column(s); val/test are separate frames when they come from files."""

    name: str
    frame: pd.DataFrame
    targets: list[str]
    features: list[str] | None = None
    val: pd.DataFrame | None = None
    test: pd.DataFrame | None = None
    split_origin: str = "fraction"  # "file" or "predefined" when val/test come ready-made
    class_names: list[str] | None = None  # display names for integer labels 0..K-1 (scikit-learn sets)
    task: str | None = None
    categorical: list[str] = field(default_factory=list)  # numeric columns the user asks to treat as categories


@dataclass
class ArraySource:
    """Signals (N, L) / (N, C, L) or images (N, C, H, W) with labels; val/test optional."""

    name: str
    kind: Kind
    x: np.ndarray
    y: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None
    split_origin: str = "fraction"
    class_names: list[str] | None = None
    task: str | None = None
    input_scale: float = 1.0  # uint8 pixels are multiplied by 1/255 before any statistics are taken


Source = TableSource | ArraySource


# --------------------------------------------------------------------------------------------- entry point


def open_source(cfg: DataConfig) -> Source:
    """Read the dataset named by ``cfg.dataset`` (built-in name or path), plus ``val_file``/``test_file``."""
    name = cfg.dataset.strip()
    key = name.lower().replace("-", "_")
    if key in BUILTIN_DATASETS:
        if cfg.val_file or cfg.test_file:
            raise DataError(f"data.val_file / data.test_file apply to datasets given by path, not to the built-in "
                            f"'{key}' (it has its own splits). Remove them, or set data.dataset to your file.")
        if key == "mnist1d":
            return load_mnist1d(cfg.options)
        if key == "fashion_mnist":
            return load_fashion_mnist(cfg.options)
        return load_sklearn(key)
    path = Path(name).expanduser()
    if not path.exists():
        close = difflib.get_close_matches(key, BUILTIN_DATASETS, n=1, cutoff=0.6)
        hint = f" Did you mean the built-in '{close[0]}'?" if close else ""
        raise DataError(f"data.dataset = '{name}' is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) "
                        f"nor an existing file or folder.{hint} Check the path (relative paths are resolved from "
                        f"'{Path.cwd()}').")
    main = read_path(path, cfg)
    for split, extra in (("val", cfg.val_file), ("test", cfg.test_file)):
        if not extra:
            continue
        other = read_path(Path(extra).expanduser(), cfg, role=f"data.{split}_file")
        if type(other) is not type(main):
            raise DataError(f"data.{split}_file = '{extra}' is a different kind of data than data.dataset = "
                            f"'{name}'; give a {split} file in the same format as the training data.")
        if isinstance(main, TableSource):
            setattr(main, split, other.frame)
        else:
            assert isinstance(other, ArraySource)
            setattr(main, split, (other.x, other.y))
        main.split_origin = "file"
    return main


def read_path(path: Path, cfg: DataConfig, role: str = "data.dataset") -> Source:
    """Read one user file or image folder."""
    if not path.exists():
        raise DataError(f"{role} = '{path}' does not exist. Check the path (relative paths are resolved from "
                        f"'{Path.cwd()}').")
    if path.is_dir():
        if any(path.rglob("*.parquet")) or any(path.rglob("*.pq")):  # a Parquet dataset of several files
            return load_table(path, cfg, role)
        return load_image_folder(path, cfg.options, role)
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else path.suffix.lower()
    if suffix in (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet", ".pq"):
        return load_table(path, cfg, role)
    if suffix == ".npz":
        return load_npz(path, cfg)
    if suffix == ".npy":
        return load_npy(path, cfg)
    raise DataError(f"{role} = '{path}': unsupported file type '{path.suffix}'. Supported: .csv/.tsv (optionally "
                    f".gz), .parquet, .npz, .npy, or a folder with one sub-folder of images per class.")


# --------------------------------------------------------------------------------------------- tables


def read_frame(path: Path, options: dict[str, Any], role: str = "data.dataset") -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file; ``options.read_kwargs`` is passed to pandas for odd separators/encodings."""
    kwargs = dict(options.get("read_kwargs") or {})
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")) or path.is_dir():
            try:
                return pd.read_parquet(path, **kwargs)
            except ImportError:
                raise DataError(f"{role} = '{path}' is a Parquet file, which needs pyarrow: pip install "
                                "'gradwise[parquet]' (or pip install pyarrow), or save it as CSV.") from None
        if name.endswith((".tsv", ".tsv.gz")):
            kwargs.setdefault("sep", "\t")
        return pd.read_csv(path, **kwargs)
    except DataError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:300]  # pandas' parser messages span lines
        raise DataError(f"{role} = '{path}' could not be read as a table: {detail}. Check the file; for another "
                        "separator or encoding set data.options.read_kwargs, e.g. {sep: ';', encoding: latin-1}.") \
            from None


def load_table(path: Path, cfg: DataConfig, role: str = "data.dataset") -> TableSource:
    frame = read_frame(path, cfg.options, role)
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"{role} = '{path}' has no rows. Give a file with a header line and at least one data row.")
    targets = table_targets(cfg, list(frame.columns), str(path))
    return TableSource(name=path.stem, frame=frame, targets=targets, features=cfg.features,
                       task=cfg.options.get("task"), categorical=list(cfg.options.get("categorical") or []))


def table_targets(cfg: DataConfig, columns: list[str], where: str) -> list[str]:
    """The target column(s): data.target, or data.options.targets for several regression targets."""
    wanted = cfg.options.get("targets") or ([cfg.target] if cfg.target else [])
    if isinstance(wanted, str):
        wanted = [wanted]
    if not wanted:
        raise DataError(f"'{where}' is a table, so data.target must name the column to predict. Its columns are: "
                        f"{names(columns)}. Set e.g. data.target={quote(columns[-1])}.")
    missing = [t for t in wanted if t not in columns]
    if missing:
        close = difflib.get_close_matches(missing[0], columns, n=1, cutoff=0.6)
        hint = f" Did you mean {quote(close[0])}?" if close else ""
        raise DataError(f"target column {quote(missing[0])} not found in '{where}'.{hint} Its columns are: "
                        f"{names(columns)}. Set data.target to one of them.")
    return [str(t) for t in wanted]


def load_sklearn(key: str) -> TableSource:
    """scikit-learn's bundled toy sets (no download), as tables so every cleaning/scaling switch works on them."""
    from sklearn import datasets as skd

    loader = {"digits": skd.load_digits, "iris": skd.load_iris, "wine": skd.load_wine,
              "breast_cancer": skd.load_breast_cancer, "diabetes": skd.load_diabetes}[key]
    bunch = loader(as_frame=True)
    frame = bunch.frame.copy()
    names = getattr(bunch, "target_names", None)
    class_names = [str(n) for n in names] if names is not None and key != "diabetes" else None
    task = "regression" if key == "diabetes" else "classification"
    return TableSource(name=key, frame=frame, targets=["target"], class_names=class_names, task=task)


# --------------------------------------------------------------------------------------------- arrays


def _array_kind(x: np.ndarray, options: dict[str, Any]) -> tuple[np.ndarray, Kind]:
    """Decide whether an (N, ...) array is a table, a signal or an image, putting images channels-first.

    (N, F) is a table unless options.kind says signal; (N, C, L) is a signal unless its last two sides are equal
    (then a grayscale image (N, 1, H, W)); (N, C, H, W) is an image (channels-last is moved first).
    """
    kind = options.get("kind")
    if kind not in (None, "table", "signal", "image"):
        raise DataError(f"data.options.kind = {kind!r} is not one of table, signal, image.")
    if x.ndim == 2:
        return x, kind or "table"
    if x.ndim == 3:
        if kind == "image" or (kind is None and x.shape[1] == x.shape[2] and x.shape[1] >= 8):
            return x[:, None], "image"
        return x, "signal"
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = np.moveaxis(x, -1, 1)  # channels-last (N, H, W, C) → (N, C, H, W)
        return x, "image"
    raise DataError(f"array data must have shape (N, features), (N, channels, length) or (N, C, H, W); got "
                    f"{x.shape}. Reshape it before saving.")


def _frame_from_arrays(x: np.ndarray, y: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    if y.ndim == 1:
        frame["target"] = y
        return frame, ["target"]
    targets = [f"target{i}" for i in range(y.shape[1])]
    for i, t in enumerate(targets):
        frame[t] = y[:, i]
    return frame, targets


def load_npz(path: Path, cfg: DataConfig) -> Source:
    """An .npz with x/X and y/Y, optionally x_val/y_val and x_test/y_test."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"'{path}' could not be read as .npz: {exc}. Save it with numpy.savez(path, x=..., y=...).") \
            from None

    def pick(*names: str) -> np.ndarray | None:
        for n in names:
            if n in arrays:
                return arrays[n]
        return None

    x, y = pick("x", "X", "x_train", "X_train"), pick("y", "Y", "y_train")
    if x is None or y is None:
        raise DataError(f"'{path}' must hold arrays named x (or X) and y; it holds: {', '.join(arrays) or 'nothing'}. "
                        "Save it with numpy.savez(path, x=features, y=targets[, x_test=..., y_test=...]).")
    pairs = {}
    for split in ("val", "test"):
        xs, ys = pick(f"x_{split}", f"X_{split}"), pick(f"y_{split}", f"Y_{split}")
        if (xs is None) != (ys is None):
            raise DataError(f"'{path}' has only one of x_{split}/y_{split}; save both or neither.")
        if xs is not None:
            pairs[split] = (xs, ys)
    return _arrays_to_source(path.stem, x, y, pairs, cfg)


def load_npy(path: Path, cfg: DataConfig) -> Source:
    """A single 2-D .npy holds features and the target in one column: the last, or options.target_column."""
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"'{path}' could not be read as .npy: {exc}.") from None
    if data.ndim != 2 or data.shape[1] < 2:
        raise DataError(f"'{path}' has shape {data.shape}; a single .npy must be a 2-D table (rows, features + "
                        "target) with the target in the last column (or data.options.target_column). For images or "
                        "signals save an .npz with x and y instead.")
    col = int(cfg.options.get("target_column", -1))
    if not -data.shape[1] <= col < data.shape[1]:
        raise DataError(f"data.options.target_column = {col} is outside the {data.shape[1]} columns of '{path}'.")
    y = data[:, col]
    x = np.delete(data, col, axis=1)
    return _arrays_to_source(path.stem, x, y, {}, cfg)


def _arrays_to_source(name: str, x: np.ndarray, y: np.ndarray, pairs: dict[str, tuple[np.ndarray, np.ndarray]],
                      cfg: DataConfig) -> Source:
    if len(x) != len(y):
        raise DataError(f"'{name}': x has {len(x)} rows but y has {len(y)}; they must match.")
    x, kind = _array_kind(np.asarray(x), cfg.options)
    pairs = {k: (_array_kind(np.asarray(v[0]), {"kind": kind})[0], np.asarray(v[1])) for k, v in pairs.items()}
    for split, (xs, ys) in pairs.items():
        if xs.shape[1:] != x.shape[1:] or len(xs) != len(ys):
            raise DataError(f"'{name}': x_{split} has shape {xs.shape} (y_{split} {len(ys)} rows) but x has "
                            f"{x.shape}; each sample must have the same shape.")
    task = cfg.options.get("task")
    if kind == "table":
        frame, targets = _frame_from_arrays(x, y)
        src = TableSource(name=name, frame=frame, targets=targets, features=cfg.features, task=task,
                          categorical=list(cfg.options.get("categorical") or []))
        for split, (xs, ys) in pairs.items():
            setattr(src, split, _frame_from_arrays(xs, ys)[0])
            src.split_origin = "predefined"
        return src
    scale = 1 / 255 if x.dtype == np.uint8 and kind == "image" else 1.0
    src_a = ArraySource(name=name, kind=kind, x=x, y=np.asarray(y), task=task, input_scale=scale, **pairs)
    if pairs:
        src_a.split_origin = "predefined"
    return src_a


# --------------------------------------------------------------------------------------------- mnist1d


def cache_dir() -> Path:
    """Where generated datasets are kept: $GRADWISE_CACHE_DIR, else ~/.cache/gradwise."""
    return Path(os.environ.get("GRADWISE_CACHE_DIR") or Path.home() / ".cache" / "gradwise")


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    # write to a temp file in the same folder, then rename: a concurrent reader never sees half a file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def mnist1d_args(options: dict[str, Any]) -> dict[str, Any]:
    """mnist1d's default generation arguments, overridden by options with the same names (e.g. num_samples)."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # only used by mnist1d's downloader, which we never call
    for k in list(args):
        if k in options:
            args[k] = options[k]
    return args


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(args_json: str) -> tuple[np.ndarray, ...]:
    args = json.loads(args_json)
    digest = hashlib.sha256(args_json.encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                arrays = tuple(z[k] for k in ("x", "y", "x_test", "y_test"))
            return _readonly(arrays)
        except (OSError, ValueError, KeyError):
            pass  # corrupt cache: regenerate below
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset reseeds Python's and numpy's global RNGs; put them back so generation has no side effects
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (data["x"].astype(np.float32), data["y"].astype(np.int64),
              data["x_test"].astype(np.float32), data["y_test"].astype(np.int64))
    with contextlib.suppress(OSError):  # a read-only home only costs regeneration next time
        _atomic_savez(path, x=arrays[0], y=arrays[1], x_test=arrays[2], y_test=arrays[3])
    return _readonly(arrays)


def _readonly(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    # these arrays are shared by the in-process cache: make accidental in-place edits fail loudly
    for a in arrays:
        a.flags.writeable = False
    return arrays


def load_mnist1d(options: dict[str, Any]) -> ArraySource:
    args = mnist1d_args(options)
    x, y, x_test, y_test = _mnist1d_arrays(json.dumps(args, sort_keys=True))
    return ArraySource(name="mnist1d", kind="signal", x=x, y=y, test=(x_test, y_test), split_origin="predefined",
                       class_names=[str(i) for i in range(10)], task="classification")


# --------------------------------------------------------------------------------------------- fashion-mnist

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or plain): 2 zero bytes, a dtype byte, ndim, ndim big-endian int32 sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"'{path}' is not an IDX file (bad magic number). Reinstall it: "
                        "apt-get install --reinstall dataset-fashion-mnist.")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"'{path}' is truncated: header says {dims}, found {data.size} values. Reinstall it: "
                        "apt-get install --reinstall dataset-fashion-mnist.")
    return data.reshape(dims)


@functools.lru_cache(maxsize=1)
def _fashion_arrays(root: str) -> tuple[np.ndarray, ...]:
    base = Path(root)
    out = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        candidates = [base / f"{stem}.gz", base / stem]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise DataError(f"fashion_mnist file '{candidates[0]}' not found. Install the dataset with "
                            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu package dataset-fashion-mnist), "
                            "or set data.options.root to a folder holding the four IDX files.")
        out.append(read_idx(path))
    x, y, xt, yt = out
    return _readonly((x[:, None], y.astype(np.int64), xt[:, None], yt.astype(np.int64)))


def load_fashion_mnist(options: dict[str, Any]) -> ArraySource:
    x, y, xt, yt = _fashion_arrays(str(options.get("root") or FASHION_MNIST_DIR))
    return ArraySource(name="fashion_mnist", kind="image", x=x, y=y, test=(xt, yt), split_origin="predefined",
                       class_names=list(FASHION_MNIST_CLASSES), task="classification", input_scale=1 / 255)


# --------------------------------------------------------------------------------------------- image folders


def load_image_folder(path: Path, options: dict[str, Any], role: str = "data.dataset") -> ArraySource:
    """One sub-folder per class; images are resized to options.image_size and read as RGB or grayscale.

    options.grayscale: true/false; by default grayscale only when every image already is.
    """
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {c: sorted(f for f in (path / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for c in classes}
    files = {c: fs for c, fs in files.items() if fs}
    if not files:
        raise DataError(f"{role} = '{path}' is a folder but holds no class sub-folders with images "
                        f"({', '.join(IMAGE_SUFFIXES)}). Lay it out as {path}/<class name>/<image files>.")
    size = options.get("image_size")
    if isinstance(size, int):
        size = (size, size)
    grayscale = options.get("grayscale")
    # first pass: headers only (mode and size, no pixels decoded), so that no decoded image is kept around
    paths: list[Path] = []
    labels: list[str] = []
    modes: set[str] = set()
    sizes: set[tuple[int, int]] = set()
    for cls, fs in files.items():
        for f in fs:
            try:
                with Image.open(f) as img:
                    modes.add(img.mode)
                    sizes.add(img.size)
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"image '{f}' could not be read: {exc}. Remove or replace the file.") from None
            paths.append(f)
            labels.append(cls)
    if grayscale is None:
        grayscale = modes <= {"L", "1", "I", "I;16", "F"}
    mode = "L" if grayscale else "RGB"
    if size is None:
        if len(sizes) > 1:
            a, b = sorted(sizes)[:2]
            raise DataError(f"images in '{path}' have different sizes (e.g. {a[0]}x{a[1]} and {b[0]}x{b[1]}); "
                            "set data.options.image_size (e.g. 32, or [height, width]) to resize them all.")
        w, h = sizes.pop()
        size = (h, w)
    h, w = int(size[0]), int(size[1])
    # second pass: each image decoded straight into its row of one uint8 array (no list of arrays, no stacking copy)
    x = np.empty((len(paths), 1 if grayscale else 3, h, w), dtype=np.uint8)
    for i, f in enumerate(paths):
        try:
            with Image.open(f) as img:
                im = img.convert(mode)
        except (UnidentifiedImageError, OSError) as exc:  # a truncated file fails only when decoded
            raise DataError(f"image '{f}' could not be read: {exc}. Remove or replace the file.") from None
        if im.size != (w, h):
            im = im.resize((w, h), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        x[i] = a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)
    y = np.asarray(labels, dtype=object)
    return ArraySource(name=path.name, kind="image", x=x, y=y, class_names=None, task="classification",
                       input_scale=1 / 255)

