"""From a trained run to use: ONNX, TorchScript and safetensors exports of a run directory's weights.

`export_run(DIR, "onnx")` writes DIR/export/model.onnx, and beside it model.onnx.json (what the model takes and
returns, the preprocessing, the check) and model.preprocess.json (a copy of the run's preprocess.json).

* ONNX and TorchScript hold a serving module (`serving.ServingModel`): the run's fitted preprocessing where it can be
  written as tensor operations (everything but one-hot encoding of categories), the network, and for regression the
  target's inverse scaling. Their input is the raw feature vector / sample; a table with categorical columns takes the
  preprocessed feature vector instead (the sidecar JSON says which). The batch dimension is dynamic.
* The model is first captured with `torch.export.export` (non-strict): a model whose forward branches on its input's
  values, or fixes the batch size, is refused there with the layer and source line, for both formats (a trace would
  silently keep one branch). ONNX is then translated by torch's own exporter (`torch.onnx.export(dynamo=True)`, opset
  18, which needs onnx and onnxscript); TorchScript is a `torch.jit.trace`.
* Each file is checked before it is written: run in onnxruntime (when installed) or loaded back with torch.jit.load,
  on batches of 1 and 16 inputs at the training data's scale, against the eager module. A mismatch is refused.
* safetensors holds the network's state_dict only (the safe weight format: no code), for `model.pretrained`.

Opening the run never executes code from it (see `gradwise.inference.load_run`; `trust_code` as for predict).

A run of `gradwise.fit(my_module, ...)` cannot be rebuilt from its directory (the model was a Python object, and no
preprocessing was fitted): `Run.export` passes the in-memory module and an example input (its training data's first
batch) instead, and `gradwise export DIR` on such a directory is refused in one line saying so (`is_fit_dir`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import logging
import re
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradwise.errors import ConfigError, GradwiseError
from gradwise.export.serving import Plan, ServingModel, build_serving, example_inputs

FORMATS = ("onnx", "torchscript", "safetensors")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "safetensors": "model.safetensors"}
OPSET = 18  # the opset torch's ONNX exporter (torchlib) is written in; onnxruntime runs it since 1.14
CHECK_ROWS = 16
INSTALL = "pip install 'gradwise[export]' (or: pip install onnx onnxscript onnxruntime)"
_MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for one ONNX file without external data


class ExportError(GradwiseError, RuntimeError):
    """A run cannot be exported in the asked format; the message says why and what to do instead."""


def export_run(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None, *,
               which: str = "auto", trust_code: bool = False, preprocessing: bool = True,
               check: bool = True, model: nn.Module | None = None, example: Any = None,
               task: str | None = None) -> Path:
    """Export RUN_DIR's model; returns the written path (default DIR/export/model.onnx|torchscript.pt|safetensors).

    ``which``: auto (the weights the run ended with: best when early stopping restored them, else last), best or
    last. ``preprocessing=False`` exports the bare network (input: the preprocessed feature vector; regression output
    in scaled units). ``check=False`` skips running the written model against the eager one. ``trust_code``: allow
    importing the model.factory module the run's config.yaml names (as for `gradwise predict --trust-code`).

    ``model`` (with ``example``): the module a `gradwise.fit` run trained, which its directory cannot rebuild; it is
    exported as it is (``which="auto"``) or with the best/last checkpoint's weights loaded into a copy of it, traced
    and checked on ``example`` (a tensor of a few inputs, or a loader whose first batch's inputs are used). ``task``:
    classification or regression, for the sidecar's description of the output.
    """
    from gradwise.inference import load_run

    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise ExportError(f"--format {format!r} is not an export format; use one of {', '.join(FORMATS)}.")
    if which not in ("auto", "best", "last"):
        raise ExportError(f"which={which!r} is not a checkpoint; use auto, best or last.")
    run_path = Path(run_dir)
    _check_checkpoints(run_path, which)
    if model is None and is_fit_dir(run_path):
        raise ExportError(fit_dir_message(run_path))
    if fmt == "onnx":
        if _torch_version() < (2, 6):
            raise ExportError(f"ONNX export uses torch's torch.export-based exporter, which needs torch 2.6 or newer "
                              f"(this is torch {torch.__version__}): pip install -U torch, or export --format "
                              "torchscript or safetensors.")
        _require("onnx", "ONNX export")
        _require("onnxscript", "ONNX export (torch's exporter translates the graph with it)")
    path = _out_path(run_path, fmt, out)
    if model is not None:
        return _export_fitted(run_path, fmt, path, which, model, example, task, check)

    run = load_run(run_path, which, trust_code=trust_code)
    pre = run.preprocessor
    if pre.kind == "text":  # the tokenizer runs outside the network: the export would take token ids (to do)
        raise ConfigError(f"'{run_path}' is a text run (data.text): gradwise export does not export text runs yet. "
                          f"Use `gradwise predict {run_path} messages.csv` on raw text, or the weights in "
                          "checkpoints/ with the run's tokenizer.json.")
    # never run.bundle: that is the training data, which an export does not need (and may not have at hand)
    task = getattr(run, "task", None) or pre.task
    shape = getattr(pre, "input_shape", None)
    started = time.perf_counter()
    network = run.model.eval()
    serving, plan = build_serving(network, pre, task, fold=preprocessing and fmt != "safetensors",
                                  fallback_shape=tuple(shape) if shape else None)
    serving.eval()
    example = example_inputs(pre, plan, 2)  # batch 2: torch.export specializes a dimension of size 0 or 1
    with torch.no_grad():
        n_outputs = int(serving(example).shape[-1])
    info: dict[str, Any] = {}
    if fmt == "safetensors":
        data = _safetensors_bytes(network, run_path)
    else:
        data = _graph_bytes(fmt, serving, example, run_path, lambda: _onnx_metadata(pre, plan, task), info)
        if check:
            info["check"] = _check(fmt, data, serving, example_inputs(pre, plan, CHECK_ROWS, seed=1), run_path)
    seconds = time.perf_counter() - started

    preprocess_copy = _preprocess_copy_path(path)
    sidecar = _sidecar(fmt, path, run_path, run, plan, task, n_outputs, preprocess_copy, info, seconds)
    copy_from = run_path / "preprocess.json"
    _write(path, data, sidecar, (copy_from, preprocess_copy) if copy_from.exists() else None)
    return path


def _write(path: Path, data: bytes, sidecar: dict[str, Any], preprocess: tuple[Path, Path] | None) -> None:
    """The export, the copy of preprocess.json (when there is one) and the sidecar, each written atomically."""
    from gradwise.train.checkpoint import atomic_write_bytes

    try:
        atomic_write_bytes(path, lambda f: f.write(data))
        if preprocess is not None:
            raw = preprocess[0].read_bytes()
            atomic_write_bytes(preprocess[1], lambda f: f.write(raw))
        text = json.dumps(sidecar, indent=2, allow_nan=False) + "\n"
        atomic_write_bytes(_sidecar_path(path), lambda f: f.write(text.encode()))
    except OSError as exc:
        raise ExportError(f"--out '{path}': cannot write the export there ({exc.strerror or exc}). Give a path in a "
                          "writable folder, e.g. --out exported/model.onnx.") from None


# --------------------------------------------------------------------------------------------- gradwise.fit runs


def is_fit_dir(run_dir: str | Path) -> bool:
    """Whether RUN_DIR was written by `gradwise.fit` on a module given as a Python object, so that the directory
    alone cannot rebuild the model: its config.yaml names no model.factory, and it has none of the files that
    `gradwise train` writes from its data (preprocess.json, the older preprocess.pkl, data_report.json); fit() was
    given tensors, so it fitted no preprocessing. (config.yaml's model.name is then only the unused default.)
    A summary.json "trained_by" entry, where the run wrote one, decides instead."""
    from gradwise.config import read_yaml
    from gradwise.data.preprocess import LEGACY_PREPROCESS_FILE, PREPROCESS_FILE

    path = Path(run_dir)
    if not (path / "config.yaml").is_file():
        return False
    with contextlib.suppress(Exception):  # a damaged or older summary.json: the files decide
        marker = json.loads((path / "summary.json").read_bytes()).get("trained_by")
        if isinstance(marker, str) and marker:
            return marker == "gradwise.fit"
    if any((path / name).exists() for name in (PREPROCESS_FILE, LEGACY_PREPROCESS_FILE, "data_report.json")):
        return False
    try:
        model = read_yaml(path / "config.yaml").get("model") or {}
    except Exception:  # a damaged config.yaml: load_run says what is wrong with it
        return False
    return isinstance(model, dict) and not model.get("factory")


def fit_dir_message(run_dir: Path) -> str:
    return (f"cannot export run '{run_dir}' from its directory: its model was a Python object given to gradwise.fit "
            "(config.yaml names no model.factory and the run stored no preprocess.json), which cannot be rebuilt "
            "from the directory's files without your code. Export it in the training script with "
            "run.export('onnx') (run = gradwise.fit(...); also 'torchscript' or 'safetensors'), or train it with "
            "`gradwise train` from a config whose model.factory builds it (model.factory=mypkg.models:build) and "
            "export that directory with --trust-code.")


def _export_fitted(run_path: Path, fmt: str, path: Path, which: str, model: nn.Module, example: Any,
                   task: str | None, check: bool) -> Path:
    """Export the module a `gradwise.fit` run trained: no preprocessing to fold (it takes what fit() was given)."""
    started = time.perf_counter()
    rows = _example_rows(example, run_path)
    checkpoint, source = _fitted_checkpoint(run_path, which)
    network = _fitted_network(model, run_path, which)
    serving, plan = build_serving(network, None, task or "", fold=False, fallback_shape=tuple(rows.shape[1:]))
    serving.eval()
    example_rows = rows[:2]  # batch 2: torch.export specializes a dimension of size 0 or 1
    with torch.no_grad():
        try:
            output = serving(example_rows)
        except Exception as exc:  # the user's forward on their own training inputs: shown as one line
            raise ExportError(f"cannot export run '{run_path}': the model fails on 2 rows of its training inputs "
                              f"(shape {tuple(example_rows.shape)}): {type(exc).__name__}: {_first_line(exc)}. "
                              "Pass example= with inputs the model takes.") from None
    if not isinstance(output, torch.Tensor):
        raise ExportError(f"cannot export run '{run_path}': the model returns {type(output).__name__}, not one "
                          "tensor; export formats here take a model with one tensor output (wrap it in a module that "
                          "returns the tensor to serve, or use --format safetensors for the weights).")
    info: dict[str, Any] = {}
    if fmt == "safetensors":
        data = _safetensors_bytes(network, run_path)
    else:
        meta = {"gradwise.task": task or "unknown", "gradwise.input": "model input (gradwise.fit: no preprocessing)"}
        data = _graph_bytes(fmt, serving, example_rows, run_path, lambda: meta, info)
        if check:
            info["check"] = _check(fmt, data, serving, rows[:CHECK_ROWS], run_path)
    graph = fmt != "safetensors"
    inp: dict[str, Any] = {"dtype": str(rows.dtype).removeprefix("torch."), "shape": ["batch", *plan.input_shape],
                           "takes": plan.takes,
                           "meaning": "the model's own input, as gradwise.fit was given it (shape from the training "
                                      "data's first batch): no preprocessing is stored with the run"}
    out: dict[str, Any] = {"dtype": str(output.dtype).removeprefix("torch."), "shape": ["batch", *output.shape[1:]],
                           "meaning": _fitted_output_meaning(task, output)}
    if task == "classification":
        out["classes"] = None  # fit() was given label indices; their names are the caller's
    sidecar = {"format": fmt, "file": path.name, "run": str(run_path.resolve()), "checkpoint": checkpoint,
               "source": source, "model": f"{type(model).__module__}.{type(model).__qualname__}",
               "trained_by": "gradwise.fit", "task": task,
               "input": {"name": "input", **inp} if graph else inp,
               "output": {"name": "output", **out} if graph else out,
               "preprocessing": {"kind": "none", "in_graph": [], "outside": [], "file": None}, **info,
               "export_seconds": round(time.perf_counter() - started, 3)}
    _write(path, data, sidecar, None)
    return path


def _fitted_output_meaning(task: str | None, output: torch.Tensor) -> str:
    width = int(output.shape[-1]) if output.ndim > 1 else 1
    if task == "classification":
        if width == 1:
            return "one logit; sigmoid(logit) is the probability of class 1 (class names unknown)"
        return "logits; softmax over the last axis gives the probabilities of classes 0..n-1 (class names unknown)"
    if task == "regression":
        return "predicted values, in the units of the targets gradwise.fit was given (no target scaling is stored)"
    return "the model's outputs, as in training"


def _fitted_checkpoint(run_path: Path, which: str) -> tuple[str, str]:
    """('checkpoints/X.pt', where the exported weights come from) for a fit run."""
    if which != "auto":
        return f"checkpoints/{which}.pt", f"checkpoints/{which}.pt loaded into a copy of run.model"
    # what load_run would pick: the in-memory model ended with these weights
    from gradwise.config import read_yaml

    try:
        es = ((read_yaml(run_path / "config.yaml").get("train") or {}).get("early_stopping") or {})
    except Exception:
        es = {}
    best = es.get("enabled", True) and es.get("restore_best", True) and (run_path / "checkpoints/best.pt").exists()
    return f"checkpoints/{'best' if best else 'last'}.pt", "run.model (the weights the run ended with)"


def _fitted_network(model: nn.Module, run_path: Path, which: str) -> nn.Module:
    """A CPU copy of the user's module in eval mode (the caller's module is not moved or switched to eval), with the
    best/last checkpoint's weights when asked for."""
    try:
        network = copy.deepcopy(model)
    except Exception as exc:  # a module holding something deepcopy refuses (a lock, a file handle)
        raise ExportError(f"cannot export run '{run_path}': the model cannot be copied for export "
                          f"({type(exc).__name__}: {_first_line(exc)}); export it with torch.onnx.export or "
                          "torch.jit.trace yourself.") from None
    network = network.to("cpu").eval()
    if which in ("best", "last"):
        from gradwise.train.checkpoint import load_checkpoint, load_weights_into

        ckpt = run_path / "checkpoints" / f"{which}.pt"
        load_weights_into(network, load_checkpoint(ckpt), ckpt)
    return network


def _example_rows(example: Any, run_path: Path) -> torch.Tensor:
    """At least 2 input rows on the CPU: `example` itself (a tensor/array), or a loader's first batch's inputs."""
    if example is None:
        raise ExportError(f"cannot export run '{run_path}': its input shape is unknown (the Run has no training "
                          "loader, e.g. a completed run returned by fit(resume=...)). Pass a few inputs: "
                          "run.export('onnx', example=X[:2]).")
    if not isinstance(example, torch.Tensor | np.ndarray):
        # the first batch of the training loader; its shuffling must not move the caller's random streams
        with torch.random.fork_rng(devices=[]):
            state = np.random.get_state()
            try:
                batch = next(iter(example))
            except Exception as exc:
                raise ExportError(f"cannot export run '{run_path}': no example input from {type(example).__name__} "
                                  f"({type(exc).__name__}: {_first_line(exc)}). Pass example=X[:2].") from None
            finally:
                np.random.set_state(state)
        example = batch[0] if isinstance(batch, tuple | list) else batch
    if isinstance(example, np.ndarray):
        example = torch.as_tensor(example)
    if not isinstance(example, torch.Tensor) or example.ndim < 1 or len(example) == 0:
        raise ExportError(f"cannot export run '{run_path}': the example input is a {type(example).__name__}, not a "
                          "tensor of rows; export formats here take a model with one tensor input. Pass "
                          "example=X[:2].")
    rows = example.detach().to("cpu")
    if len(rows) == 1:  # torch.export needs a batch of 2 to keep the batch dimension free
        rows = torch.cat([rows, rows])
    return rows


def _graph_bytes(fmt: str, serving: nn.Module, example: torch.Tensor, run_path: Path,
                 metadata: Callable[[], dict[str, str]], info: dict[str, Any]) -> bytes:
    """The ONNX or TorchScript file of `serving`, captured on `example`; `info` gets the exporter (and opset)."""
    with _quiet(), torch.no_grad():
        program = _capture(serving, example, run_path)
        if fmt == "onnx":
            info["opset"] = OPSET
            info["exporter"] = f"torch.onnx.export(dynamo=True), torch {torch.__version__}"
            return _onnx_bytes(program, run_path, metadata())
        info["exporter"] = f"torch.jit.trace, torch {torch.__version__}"
        return _torchscript_bytes(serving, example)


def sidecar_path(path: str | Path) -> Path:
    """The JSON written beside an exported file: what it takes and returns, its preprocessing, its check."""
    return _sidecar_path(Path(path))


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _preprocess_copy_path(path: Path) -> Path:
    # model.onnx, model.torchscript.pt, model.safetensors share model.preprocess.json (the same bytes for one run)
    stem = path.name.split(".")[0] or "model"
    return path.with_name(f"{stem}.preprocess.json")


# --------------------------------------------------------------------------------------------- checks up front


def _torch_version() -> tuple[int, int]:
    major, minor = (re.findall(r"\d+", torch.__version__) + ["0", "0"])[:2]
    return int(major), int(minor)


def _require(module: str, what: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{what} needs the Python package '{module}', which is not installed: {INSTALL}.") from None


def _check_checkpoints(run_dir: Path, which: str) -> None:
    if not (run_dir / "config.yaml").exists():
        raise ExportError(f"'{run_dir}' is not a gradwise run directory (no config.yaml). Give the directory "
                          "`gradwise train` printed at the end.")
    folder = run_dir / "checkpoints"
    have = sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []
    if not have:
        raise ExportError(f"run '{run_dir}' has no checkpoints ({folder} holds no .pt file): it stopped before its "
                          "first checkpoint, so there are no trained weights to export. Train it (or resume it with "
                          f"`gradwise train --resume {run_dir}`) first.")
    if which in ("best", "last") and which not in have:
        raise ExportError(f"run '{run_dir}' has no {which}.pt checkpoint (it has: {', '.join(have)}); choose "
                          f"--which {'last' if 'last' in have else have[0]}, or --which auto.")


def _out_path(run_dir: Path, fmt: str, out: str | Path | None) -> Path:
    if out is None:
        return run_dir / "export" / FILE_NAMES[fmt]
    path = Path(out).expanduser()
    if path.is_dir() or str(out).endswith(("/", "\\")):
        return path / FILE_NAMES[fmt]
    return path


# --------------------------------------------------------------------------------------------- exporting


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's exporters log progress, skipped torchvision ops and their own deprecations; the user asked for a file,
    and any failure is turned into one ExportError line, so their chatter is muted while they run."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        # torch.export prints the partial graph of a failed capture to stderr; the ExportError says what matters
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _capture(serving: ServingModel, example: torch.Tensor, run_dir: Path) -> Any:
    """torch.export the serving module with a dynamic batch dim, or refuse with the layer and line that stop it."""
    batch = torch.export.Dim("batch")
    try:
        return torch.export.export(serving, (example,), dynamic_shapes=({0: batch},), strict=False)
    except Exception as exc:  # torch.export raises many types (UserError, GuardOnDataDependentSymNode, ...)
        raise ExportError(_capture_message(exc, serving, run_dir)) from None


def _capture_message(exc: BaseException, serving: ServingModel, run_dir: Path) -> str:
    layer, code = _failing_layer(exc, serving)
    text = _first_line(exc)
    full = f"{type(exc).__name__} {exc}"
    where = f"{layer}{f' at {code}' if code else ''}" if layer else (code or "the model's forward")
    if "data-dependent" in full or "DataDependent" in full:
        reason = (f"{where} branches on the values of its input (data-dependent control flow); an exported graph has "
                  "one fixed path, so it would be wrong for some inputs")
        fix = ("Write the branch as tensor operations (torch.where, masks), or export the weights with --format "
               "safetensors and rebuild the model in Python")
    elif "batch" in full and ("Constraints violated" in full or "specializ" in full or "Dim" in full):
        reason = f"{where} fixes the batch size (it must stay free in an export)"
        fix = "Use x.shape[0] or -1 instead of a fixed number of rows in reshapes and views"
    else:
        reason = f"torch.export cannot capture {where} ({type(exc).__name__}: {text})"
        fix = ("See https://pytorch.org/docs/stable/export.html for what it supports, or export the weights with "
               "--format safetensors")
    return f"cannot export run '{run_dir}': {reason}. {fix}."


def _failing_layer(exc: BaseException, serving: ServingModel) -> tuple[str, str]:
    """('name (Class)', 'file:line `code`') of the innermost network module whose forward was running when `exc`
    was raised (torch.export's non-strict mode runs the real Python forward, so its frames are in the traceback)."""
    names = {id(m): n for n, m in serving.network.named_modules()}
    torch_dir = str(Path(torch.__file__).parent)
    layer, code = "", ""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        tb = cause.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in names:
                name = names[id(owner)] or "the network"
                layer = f"layer '{name}' ({type(owner).__name__})"
            filename = frame.f_code.co_filename
            if not filename.startswith(torch_dir) and not filename.endswith(("export/__init__.py", "serving.py")):
                line = (traceback.extract_tb(tb, limit=1)[0].line or "").strip()
                code = f"{Path(filename).name}:{tb.tb_lineno}" + (f" `{line}`" if line else "")
            tb = tb.tb_next
        cause = cause.__cause__ or cause.__context__
    return layer, code


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _onnx_metadata(pre: Any, plan: Plan, task: str) -> dict[str, str]:
    """What a serving system that only has the .onnx file needs most (the sidecar JSON has the rest)."""
    meta = {"gradwise.task": task, "gradwise.input": plan.takes}
    if task == "classification" and pre.class_names:
        meta["gradwise.classes"] = json.dumps(pre.class_names)
    if plan.takes == "raw" and pre.kind == "table":
        meta["gradwise.columns"] = json.dumps([str(c) for c in pre.columns])
    return meta


def _onnx_bytes(program: Any, run_dir: Path, metadata: dict[str, str]) -> bytes:
    try:
        onnx_program = torch.onnx.export(program, dynamo=True, opset_version=OPSET, input_names=["input"],
                                         output_names=["output"], verbose=False)
    except Exception as exc:  # the exporter's errors: ConversionError, DispatchError, ...
        raise ExportError(_conversion_message(exc, program, run_dir)) from None
    proto = onnx_program.model_proto
    _name_batch_dim(proto)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if proto.ByteSize() > _MAX_PROTO_BYTES:
        raise ExportError(f"cannot export run '{run_dir}' to ONNX as one file: the model is over 2 GB, protobuf's "
                          "limit. Use --format safetensors (weights) or torchscript.")
    return proto.SerializeToString()


def _conversion_message(exc: BaseException, program: Any, run_dir: Path) -> str:
    """One line for an ONNX translation failure, naming the operator and the layer whose forward called it."""
    chain, seen, cause = [], set(), exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    full = "\n".join(chain)
    match = re.search(r"target=(?:torch\.ops\.)?([\w.]+)", full) or re.search(r"op='([\w.]+)'", full)
    op = match.group(1) if match else ""  # e.g. aten._linalg_eigh.default
    layer = _layer_calling(program, op) if op else ""
    what = f"operator {'.'.join(op.split('.')[:2])}" if op else "an operation"
    where = f" in {layer}" if layer else ""
    reason = next((ln.split(">:", 1)[-1].strip() for ln in full.splitlines() if "No ONNX function" in ln),
                  _first_line(exc))
    return (f"cannot export run '{run_dir}' to ONNX: torch's exporter cannot translate {what}{where} ({reason}). "
            "Export it with --format torchscript, or the weights with --format safetensors.")


def _layer_calling(program: Any, op: str) -> str:
    """'layer NAME (Class) at file:line' of the first node that calls `op` (e.g. aten._linalg_eigh.default) in the
    captured graph, or in it decomposed (the exporter translates the decomposed graph: linalg_eigvalsh has become
    _linalg_eigh there); each node keeps the module stack and source line it came from."""
    def graphs() -> Iterator[Any]:
        yield program.graph
        try:
            yield program.run_decompositions().graph
        except Exception:  # only a better message is at stake
            return

    for graph in graphs():
        for node in graph.nodes:
            if node.op == "call_function" and (str(node.target) == op or str(node.target).startswith(op + ".")):
                return _node_layer(node)
    return ""


def _node_layer(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    entries = [v for v in stack.values() if isinstance(v, tuple) and len(v) == 2]
    name, kind = "", ""
    if entries:
        path, cls = entries[-1]
        kind = getattr(cls, "__name__", str(cls).rsplit(".", 1)[-1])
        name = re.sub(r"^network\.?", "", str(path)) or "the network"
    lines = re.findall(r'File "([^"]+)", line (\d+)', node.meta.get("stack_trace") or "")
    at = f" at {Path(lines[-1][0]).name}:{lines[-1][1]}" if lines else ""
    return f"layer '{name}' ({kind}){at}" if name else at.strip()


def _name_batch_dim(proto: Any) -> None:
    """torch.export calls the dynamic batch dim s0/s31...; inputs and outputs show it as 'batch'."""
    old = {d.dim_param for v in [*proto.graph.input, *proto.graph.output]
           for d in v.type.tensor_type.shape.dim[:1] if d.dim_param}
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in old:
                dim.dim_param = "batch"


def _torchscript_bytes(serving: ServingModel, example: torch.Tensor) -> bytes:
    # check_trace=False: its re-trace comparison reports a transformer's two traces as different graphs (module name
    # mangling), a false alarm; the export is checked against the eager module on fresh inputs instead (_check)
    traced = torch.jit.trace(serving, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _safetensors_bytes(network: nn.Module, run_dir: Path) -> bytes:
    from safetensors.torch import save

    # a clone each: safetensors refuses tensors that share storage (tied weights), and needs contiguous ones
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in network.state_dict().items()}
    return save(state, metadata={"format": "pt", "producer": "gradwise", "run": str(run_dir)})


# --------------------------------------------------------------------------------------------- checking


def _check(fmt: str, data: bytes, serving: ServingModel, x: torch.Tensor, run_dir: Path) -> dict[str, Any] | None:
    """Run the exported bytes on batches of 1 and the rest of `x` and compare with the eager module."""
    rows = len(x)
    with torch.no_grad():
        reference = serving(x).float().numpy()
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            return None  # written unchecked; the sidecar says so
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        run = lambda rows: session.run(None, {"input": rows.numpy()})[0]  # noqa: E731
        runtime = f"onnxruntime {ort.__version__}"
    else:
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        run = lambda rows: loaded(rows).float().numpy()  # noqa: E731
        runtime = f"torch.jit.load, torch {torch.__version__}"
    with _quiet(), torch.no_grad():
        outputs = np.concatenate([run(x[:1]), run(x[1:])])
    diff = float(np.max(np.abs(outputs - reference))) if outputs.shape == reference.shape else float("inf")
    scale = max(1.0, float(np.max(np.abs(reference))))
    if not np.isfinite(diff) or diff > 1e-3 * scale:
        raise ExportError(f"cannot export run '{run_dir}' to {fmt}: the exported model's outputs differ from the "
                          f"network's by up to {diff:.3g} (shape {outputs.shape} vs {reference.shape}) on "
                          f"{rows} inputs at batch sizes 1 and {rows - 1}, so it does not compute the same "
                          "function (a batch size or branch fixed at export time?). Nothing was written; try the "
                          "other format, or --format safetensors for the weights.")
    return {"runtime": runtime, "rows": rows, "batch_sizes": [1, rows - 1], "max_abs_diff": diff}


# --------------------------------------------------------------------------------------------- the sidecar


def _sidecar(fmt: str, path: Path, run_dir: Path, run: Any, plan: Plan, task: str, n_out: int,
             preprocess_copy: Path, info: dict[str, Any], seconds: float) -> dict[str, Any]:
    pre = run.preprocessor
    has_copy = (run_dir / "preprocess.json").exists()
    graph = fmt != "safetensors"
    inp: dict[str, Any] = {"dtype": "float32", "shape": ["batch", *plan.input_shape], "takes": plan.takes}
    if graph:
        inp = {"name": "input", **inp}
    if plan.input_names:
        inp["columns" if plan.takes == "raw" else "features"] = plan.input_names
    if plan.takes == "raw":
        if pre.kind != "table":
            inp["meaning"] = "raw samples: the preprocessing is inside the model"
        elif pre.num_imputer is not None:
            inp["meaning"] = ("raw values in `columns` order (booleans as 0/1): the preprocessing is inside the model; "
                              "a missing numeric value is NaN")
        else:
            inp["meaning"] = ("raw values in `columns` order (booleans as 0/1): the preprocessing is inside the model; "
                              "the run imputes nothing (data.missing), so a NaN gives NaN outputs")
    else:
        inp["meaning"] = ("the preprocessed feature vector: apply the steps under preprocessing.outside first "
                          f"(gradwise.data.preprocess.Preprocessor.load('{preprocess_copy.name}').transform_frame(rows)"
                          " does them)")
    out: dict[str, Any] = {"dtype": "float32", "shape": ["batch", n_out]}
    if graph:
        out = {"name": "output", **out}
    if task == "classification":
        classes = pre.class_names
        if n_out == 1:
            out["meaning"] = (f"one logit; sigmoid(logit) is the probability of class {classes[1]!r}"
                              if classes and len(classes) == 2 else "one logit")
        else:
            out["meaning"] = "logits; softmax over the last axis gives the class probabilities"
        out["classes"] = classes
    else:
        out["targets"] = list(pre.target_columns) or None
        scaled = pre.target_mean is not None and pre.target_scale is not None
        if not scaled or plan.target_in_graph:
            out["meaning"] = "predicted values in the target's units"
        else:
            out["meaning"] = "scaled predictions: value = output * inverse_scaling.scale + inverse_scaling.mean"
        if scaled:
            out["inverse_scaling"] = {"mean": np.asarray(pre.target_mean).tolist(),
                                      "scale": np.asarray(pre.target_scale).tolist(),
                                      "in_graph": plan.target_in_graph}
    preprocessing = {"kind": pre.kind, "in_graph": plan.in_graph, "outside": plan.outside,
                     "file": preprocess_copy.name if has_copy else None}
    return {"format": fmt, "file": path.name, "run": str(run_dir.resolve()),
            "checkpoint": f"checkpoints/{run.checkpoint.name}", "model": run.config.model.name,
            "task": task, "input": inp, "output": out, "preprocessing": preprocessing, **info,
            "export_seconds": round(seconds, 3)}
