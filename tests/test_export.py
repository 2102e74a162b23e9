"""gradwise export / Run.export: ONNX (run in onnxruntime), TorchScript and safetensors exports of trained runs.

The reference is always the trained model itself: run.model on the run's own test rows (as the run preprocessed
them), while the exported file gets the raw rows (its preprocessing is inside the graph) - so each test checks the
folded preprocessing as well as the network.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gradwise
from gradwise.cli import main as cli_main
from gradwise.data.datasets import open_source
from gradwise.errors import CheckpointError
from gradwise.export import ExportError, export_run, sidecar_path
from gradwise.inference import LoadedRun, load_run, predict

QUIET = ["train.progress=none", "doctor.enabled=false"]
MODELS = {
    "mlp": ["data.dataset=iris", "model.name=mlp", "model.widths=[16]", "train.epochs=2"],
    "cnn1d": ["data.dataset=mnist1d", "model.name=cnn1d", "model.channels=[8,8]", "train.epochs=1"],
    "transformer": ["data.dataset=mnist1d", "model.name=transformer", "model.hidden_size=16", "model.heads=2",
                    "model.num_layers=1", "train.epochs=1"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, gradwise.Run]:
    root = tmp_path_factory.mktemp("export")
    return {name: gradwise.train(None, [*over, *QUIET, f"out={root / name}"]) for name, over in MODELS.items()}


def raw_test_rows(run: gradwise.Run) -> tuple[np.ndarray, torch.Tensor]:
    """The run's test rows as they are in the dataset (raw) and as the run preprocessed them for its model."""
    loaded = load_run(run.dir)
    source = open_source(run.config.data)
    if hasattr(source, "frame"):  # a table: the test split's source rows
        raw = source.frame.iloc[loaded.bundle.split_indices["test"]][loaded.preprocessor.columns].to_numpy(np.float64)
    else:  # mnist1d: its official test split
        raw = np.asarray(source.test[0])
    x_test = loaded.bundle.test[0]
    # these raw rows are the test rows: the stored preprocessing maps them onto the run's own test tensor
    torch.testing.assert_close(loaded.preprocessor.transform_array(raw), x_test, rtol=0, atol=0)
    return raw.astype(np.float32), x_test


def trained_outputs(run: gradwise.Run, x_test: torch.Tensor) -> np.ndarray:
    model = run.model.eval()
    with torch.no_grad():
        return model(x_test).numpy()


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_in_onnxruntime_matches_the_trained_model_on_the_test_rows(runs: dict[str, gradwise.Run],
                                                                        name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    run = runs[name]
    path = run.export("onnx")
    assert path == run.dir / "export" / "model.onnx"
    raw, x_test = raw_test_rows(run)
    expected = trained_outputs(run, x_test)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": raw})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # dynamic batch: one row at a time gives the same numbers
    np.testing.assert_allclose(session.run(None, {"input": raw[:1]})[0], expected[:1], rtol=1e-4, atol=1e-4)
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 18
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["gradwise.classes"]) == load_run(run.dir).preprocessor.class_names
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["input"]["takes"] == "raw" and meta["input"]["shape"] == ["batch", *raw.shape[1:]]
    assert meta["output"]["classes"] == load_run(run.dir).preprocessor.class_names
    assert meta["check"]["max_abs_diff"] < 1e-4
    assert (path.parent / "model.preprocess.json").read_bytes() == (run.dir / "preprocess.json").read_bytes()


@pytest.mark.parametrize("name", list(MODELS))
def test_torchscript_matches_the_trained_model_on_the_test_rows(runs: dict[str, gradwise.Run], name: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = runs[name]
    out = run.dir / "served"
    with pytest.raises(SystemExit) as stop:
        cli_main(["export", str(run.dir), "--format", "torchscript", "--out", str(out / "net.pt")])
    assert stop.value.code in (0, None)
    path = out / "net.pt"
    assert f"exported torchscript: {path}" in capsys.readouterr().out
    raw, x_test = raw_test_rows(run)
    expected = trained_outputs(run, x_test)
    scripted = torch.jit.load(str(path))
    with torch.no_grad():
        got = scripted(torch.from_numpy(raw)).numpy()
        one = scripted(torch.from_numpy(raw[:1])).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(one, expected[:1], rtol=1e-4, atol=1e-4)
    assert json.loads((out / "net.pt.json").read_text())["format"] == "torchscript"
    assert (out / "net.preprocess.json").exists()


def test_bare_network_export_takes_the_preprocessed_features(runs: dict[str, gradwise.Run], tmp_path: Path) -> None:
    run = runs["cnn1d"]
    path = export_run(run.dir, "torchscript", tmp_path, preprocessing=False)  # a folder: model.torchscript.pt in it
    assert path == tmp_path / "model.torchscript.pt"
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["input"]["takes"] == "features" and meta["preprocessing"]["in_graph"] == []
    assert any("scaling" in step for step in meta["preprocessing"]["outside"])
    _, x_test = raw_test_rows(run)
    with torch.no_grad():
        got = torch.jit.load(str(path))(x_test).numpy()
    np.testing.assert_allclose(got, trained_outputs(run, x_test), rtol=1e-5, atol=1e-5)


class FirstWeights(gradwise.Callback):
    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer) -> None:  # noqa: ANN001
        self.state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_safetensors_round_trips_into_model_pretrained(runs: dict[str, gradwise.Run], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    run = runs["mlp"]
    path = run.export("safetensors", tmp_path / "iris.safetensors")
    trained = run.model.state_dict()
    stored = load_file(str(path))
    assert stored.keys() == trained.keys()
    assert all(torch.equal(stored[k], trained[k]) for k in trained)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["input"]["takes"] == "features" and meta["format"] == "safetensors"
    with pytest.raises(SystemExit):  # a new folder given with a trailing '/'
        cli_main(["export", str(run.dir), "-f", "safetensors", "-o", f"{tmp_path}/weights/"])
    again = load_file(str(tmp_path / "weights" / "model.safetensors"))
    assert all(torch.equal(again[k], trained[k]) for k in trained)

    first = FirstWeights()
    gradwise.train(None, [*MODELS["mlp"], *QUIET, "train.epochs=1", f"model.pretrained={path}",
                          "model.pretrained_strict=true", f"out={tmp_path / 'again'}"], callbacks=[first])
    assert first.state.keys() == trained.keys()
    assert all(torch.equal(first.state[k], trained[k]) for k in trained)


def _csv(tmp_path: Path, categorical: bool) -> Path:
    gen = np.random.default_rng(0)
    n = 240
    frame = pd.DataFrame({"a": gen.normal(10, 3, n), "b": gen.uniform(0, 100, n)})
    frame["price"] = 3 * frame["a"] - 0.2 * frame["b"] + gen.normal(0, 1, n) + 500
    frame.loc[gen.choice(n, 20, replace=False), "a"] = np.nan  # imputed by the run's median
    frame.loc[[3, 7], "b"] = [1e4, -1e4]  # clipped by iqr_clip
    if categorical:
        frame["shop"] = gen.choice(["north", "south", "east"], n)
        frame.loc[frame["shop"] == "north", "price"] += 25
    path = tmp_path / f"prices{'_shops' if categorical else ''}.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.filterwarnings("ignore::UserWarning")  # predict() notes the imputed and clipped values
@pytest.mark.parametrize("categorical", [False, True], ids=["numeric", "with-categories"])
def test_regression_table_export_gives_predict_values(tmp_path: Path, categorical: bool) -> None:
    """Imputation, clipping, min-max scaling and the target's inverse scaling inside the graph (numeric table); with
    a categorical column the graph takes the preprocessed features instead and still returns the target's units."""
    ort = pytest.importorskip("onnxruntime")
    csv = _csv(tmp_path, categorical)
    run = gradwise.train(None, [f"data.dataset={csv}", "data.target=price", "data.missing=median",
                                "data.outliers=iqr_clip", "data.scale=minmax", "model.name=mlp", "model.widths=[8]",
                                "train.epochs=2", *QUIET, f"out={tmp_path / 'run'}"])
    path = run.export("onnx")
    meta = json.loads(sidecar_path(path).read_text())
    rows = pd.read_csv(csv).drop(columns=["price"])
    expected = predict(run.dir, rows)["prediction"].to_numpy()
    pre = load_run(run.dir).preprocessor
    if categorical:
        assert meta["input"]["takes"] == "features" and meta["input"]["features"] == pre.feature_names
        assert any("one-hot" in step for step in meta["preprocessing"]["outside"])
        feed = pre.transform_frame(rows).numpy()
    else:
        assert meta["input"]["takes"] == "raw" and meta["input"]["columns"] == ["a", "b"]
        assert any("clip" in step for step in meta["preprocessing"]["in_graph"])
        feed = rows[["a", "b"]].to_numpy(np.float32)
        assert np.isnan(feed).any()  # missing values go in as NaN
    assert meta["output"]["inverse_scaling"]["in_graph"] is True
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": feed})[0]
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-4, atol=1e-3)
    assert 400 < np.median(got) < 600  # in price units (about 500), not standardized ones (about 0)


@pytest.mark.skipif(dataclasses.is_dataclass(LoadedRun), reason="this tree's load_run still reads the training data")
def test_export_needs_only_the_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The training CSV moved away and another working directory: every format still exports, and ONNX agrees with
    predict (which needs only the run directory too)."""
    csv = _csv(tmp_path, categorical=False)
    run = gradwise.train(None, [f"data.dataset={csv}", "data.target=price", "data.missing=median", "model.name=mlp",
                                "model.widths=[8]", "train.epochs=1", *QUIET, f"out={tmp_path / 'run'}"])
    rows = pd.read_csv(csv).drop(columns=["price"]).dropna()
    csv.rename(tmp_path / "elsewhere.csv")
    monkeypatch.chdir(tmp_path / "run")
    for fmt in ("onnx", "torchscript", "safetensors"):
        assert export_run(run.dir, fmt).exists()
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(run.dir / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": rows[["a", "b"]].to_numpy(np.float32)})[0][:, 0]
    np.testing.assert_allclose(got, predict(run.dir, rows)["prediction"].to_numpy(), rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------------------------- refusals

FACTORIES = '''
import torch
from torch import nn


class Branchy(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.a = nn.Linear(n_in, n_out)
        self.b = nn.Linear(n_in, n_out)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return self.a(x)
        return self.b(x)


class Eig(nn.Module):
    def forward(self, x):
        g = x[:, :4].reshape(-1, 2, 2)
        return torch.linalg.eigvalsh(g @ g.transpose(1, 2))


def branchy(input_shape, n_outputs):
    return nn.Sequential(nn.Linear(input_shape[0], 8), Branchy(8, n_outputs))


def eig(input_shape, n_outputs):
    return nn.Sequential(nn.Linear(input_shape[0], 4), Eig(), nn.Linear(2, n_outputs))
'''


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"gw_export_nets_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def _factory_run(tmp_path: Path, factory: str) -> gradwise.Run:
    return gradwise.train(None, ["data.dataset=iris", f"model.factory={factory}", "train.epochs=1", *QUIET,
                                 f"out={tmp_path / 'run'}"])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_data_dependent_control_flow_is_refused_with_the_layer(tmp_path: Path, factory_module: str, fmt: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = _factory_run(tmp_path, f"{factory_module}:branchy")
    with pytest.raises(SystemExit) as stop:  # a run's own factory is code: not imported without --trust-code
        cli_main(["export", str(run.dir), "--format", fmt])
    assert stop.value.code == 2 and "--trust-code" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        cli_main(["export", str(run.dir), "--format", fmt, "--trust-code"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "layer '1' (Branchy)" in err and "branches on the values of its input" in err
    assert "if x.sum() > 0" in err and "Traceback" not in err
    assert not (run.dir / "export").exists()


def test_untranslatable_operator_is_refused_naming_layer_and_operator(tmp_path: Path, factory_module: str) -> None:
    pytest.importorskip("onnxscript")
    run = _factory_run(tmp_path, f"{factory_module}:eig")
    with pytest.raises(ExportError, match=r"operator aten\.\w*eig\w* in layer '1' \(Eig\)") as info:
        export_run(run.dir, "onnx", trust_code=True)
    assert "\n" not in str(info.value)
    assert not (run.dir / "export").exists()


def test_run_without_checkpoints_is_refused(runs: dict[str, gradwise.Run], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "config.yaml").write_bytes((runs["mlp"].dir / "config.yaml").read_bytes())
    with pytest.raises(SystemExit) as stop:
        cli_main(["export", str(empty), "--format", "safetensors"])
    assert stop.value.code == 2 and "has no checkpoints" in capsys.readouterr().err
    with pytest.raises(ExportError, match="no best.pt checkpoint"):
        export_run(_only_last(runs["mlp"].dir, tmp_path), "safetensors", which="best")
    with pytest.raises(CheckpointError, match="not a gradwise run directory"):
        load_run(tmp_path / "nothing")


def _only_last(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "last-only"
    (copy / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "preprocess.json", "data_report.json"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    (copy / "checkpoints" / "last.pt").write_bytes((run_dir / "checkpoints" / "last.pt").read_bytes())
    return copy


def test_missing_onnx_package_names_the_pip_command(runs: dict[str, gradwise.Run],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript raises ImportError
    with pytest.raises(ExportError, match=r"'onnxscript'.*pip install 'gradwise\[export\]'"):
        runs["mlp"].export("onnx")


# --------------------------------------------------------------------------------------------- gradwise.fit runs


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[gradwise.Run, torch.Tensor]:
    """gradwise.fit on the user's own nn.Module and iris tensors: a directory that cannot rebuild the model."""
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x_t = torch.tensor(x, dtype=torch.float32)
    run = gradwise.fit(net, (x_t, torch.tensor(y)), epochs=3, out=tmp_path_factory.mktemp("fit") / "fitrun",
                       progress="none")
    return run, x_t


def _eager(model: torch.nn.Module, rows: torch.Tensor) -> np.ndarray:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(rows).numpy()
    model.train(was_training)
    return out


def test_fit_run_exports_its_in_memory_model(fit_run: tuple[gradwise.Run, torch.Tensor], tmp_path: Path) -> None:
    import onnxruntime as ort
    from safetensors.torch import load_file

    run, x = fit_run
    rows = x[::30]  # 5 rows of the training data, one batch
    expected = _eager(run.model, rows)
    training = run.model.training

    onnx_path = run.export("onnx", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": rows.numpy()})[0], expected, rtol=1e-5, atol=1e-5)
    meta = json.loads(sidecar_path(onnx_path).read_text())
    assert meta["trained_by"] == "gradwise.fit" and meta["task"] == "classification"
    assert meta["input"]["shape"] == ["batch", 4] and meta["input"]["dtype"] == "float32"
    assert meta["output"]["shape"] == ["batch", 3] and meta["output"]["classes"] is None
    assert meta["output"]["meaning"].startswith("logits")
    assert meta["preprocessing"]["kind"] == "none" and meta["preprocessing"]["file"] is None
    assert meta["check"]["runtime"].startswith("onnxruntime") and meta["check"]["max_abs_diff"] < 1e-4
    assert not (tmp_path / "m.preprocess.json").exists()

    ts_path = run.export("torchscript", tmp_path / "m.pt")
    np.testing.assert_allclose(torch.jit.load(str(ts_path))(rows).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert json.loads(sidecar_path(ts_path).read_text())["check"]["runtime"].startswith("torch.jit.load")

    st_path = run.export("safetensors", tmp_path / "m.safetensors")
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    fresh.load_state_dict(load_file(str(st_path)))
    np.testing.assert_allclose(_eager(fresh, rows), expected, rtol=0, atol=0)
    # the in-memory model equals the checkpoint `auto` names (early stopping restored best.pt)
    best = torch.load(run.dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)["model"]
    assert all(torch.equal(v, best[k]) for k, v in load_file(str(st_path)).items())
    assert run.model.training == training  # the caller's module is left as it was (a copy is exported)


@pytest.mark.parametrize("which", ["best", "last"])
def test_fit_run_which_loads_that_checkpoint(fit_run: tuple[gradwise.Run, torch.Tensor], tmp_path: Path,
                                             which: str) -> None:
    from safetensors.torch import load_file

    run, x = fit_run
    state = torch.load(run.dir / "checkpoints" / f"{which}.pt", map_location="cpu", weights_only=True)["model"]
    exported = load_file(str(run.export("safetensors", tmp_path / f"{which}.safetensors", which=which)))
    assert exported.keys() == state.keys() and all(torch.equal(exported[k], state[k]) for k in state)
    path = run.export("torchscript", tmp_path / f"{which}.pt", which=which)
    reference = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    reference.load_state_dict(state)
    np.testing.assert_allclose(torch.jit.load(str(path))(x[:7]).detach().numpy(), _eager(reference, x[:7]),
                               rtol=1e-5, atol=1e-5)
    assert json.loads(sidecar_path(path).read_text())["checkpoint"] == f"checkpoints/{which}.pt"


def test_fit_run_directory_is_refused_by_the_cli_in_one_line(fit_run: tuple[gradwise.Run, torch.Tensor],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = fit_run
    for fmt in ("onnx", "safetensors"):
        with pytest.raises(SystemExit) as stop:
            cli_main(["export", str(run.dir), "--format", fmt])
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
        assert "Python object given to gradwise.fit" in err and "run.export(" in err and "--trust-code" in err
    # the Python API on the directory alone (no model object) refuses it the same way
    with pytest.raises(ExportError, match="gradwise.fit"):
        export_run(run.dir, "safetensors")


def test_built_in_run_directory_is_not_taken_for_a_fit_run(runs: dict[str, gradwise.Run]) -> None:
    from gradwise.export import is_fit_dir

    assert not is_fit_dir(runs["mlp"].dir) and not is_fit_dir(runs["cnn1d"].dir)
