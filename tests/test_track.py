"""Trackers (track: [tensorboard, mlflow, csv]): what each records, read back with the tracker's own reader
(TensorBoard's EventAccumulator, MLflow's MlflowClient), nesting of a tuning study, a missing package, and that a
tracker that fails never fails the run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn

import gradwise
from gradwise.errors import ConfigError

QUIET = {"progress": "none"}


def digits(rows: int = 480) -> tuple[torch.Tensor, ...]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32)
    y = torch.tensor(y)
    return x[:rows], y[:rows], x[rows:rows + 200], y[rows:rows + 200]


def mlp(inputs: int = 64, outputs: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(inputs, 32), nn.ReLU(), nn.Linear(32, outputs))


def nan_run(out: Path, config: dict) -> gradwise.Run:
    """A faulty run: plain SGD at LR 5 without clipping on diabetes goes non-finite in the first steps; the doctor
    reports nonfinite_values and stops it."""
    x, y = load_diabetes(return_X_y=True)
    x = torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32)
    y = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32).reshape(-1, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    return gradwise.fit(model, (x[:350], y[:350]), val=(x[350:], y[350:]), loss="mse", optimizer="sgd", lr=5.0,
                        momentum=0.0, clip_grad=None, schedule="constant", batch_size=32, epochs=5, out=out,
                        config=config, **QUIET)


def events(path: Path) -> object:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------- TensorBoard


def test_tensorboard_records_step_loss_epoch_metrics_and_hparams(tmp_path: Path) -> None:
    """Every optimizer step's loss (train.log_every=1): each epoch's steps average to metrics.jsonl's train_loss
    (equal batches); the epoch scalars are metrics.jsonl's; the config is in the hparams."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    x, y, xv, yv = digits(480)  # 15 steps of 32 rows per epoch
    out = tmp_path / "tb"
    gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", lr=3e-3, epochs=2, batch_size=32, out=out,
                 config={"track": ["tensorboard"], "train": {"log_every": 1}}, **QUIET)
    acc = events(out / "tensorboard")
    steps = acc.Scalars("step/train_loss")
    assert [e.step for e in steps] == list(range(1, 31))
    rows = metrics_rows(out)
    for epoch, row in enumerate(rows):
        mean = np.mean([e.value for e in steps[15 * epoch:15 * (epoch + 1)]])
        assert mean == pytest.approx(row["train_loss"], rel=1e-5)
    assert [e.step for e in acc.Scalars("step/lr")] == list(range(1, 31))
    for name in ("train_loss", "val_loss", "val_accuracy", "val_f1", "val_balanced_accuracy"):
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars(f"epoch/{name}")] == \
            [(r["epoch"], r[name]) for r in rows]
    content = acc.PluginTagToContent("hparams")
    start = next(plugin_data_pb2.HParamsPluginData.FromString(v).session_start_info
                 for k, v in content.items() if k.endswith("session_start_info"))
    assert start.hparams["optim.lr"].number_value == pytest.approx(3e-3)
    assert start.hparams["track.use"].string_value == '["tensorboard"]'


def test_tensorboard_logs_every_nth_step_and_the_doctors_findings(tmp_path: Path) -> None:
    """A faulty run: the loss every 3rd step up to where it stopped, and the doctor's finding as text."""
    out = tmp_path / "nan"
    run = nan_run(out, {"track": ["tensorboard"], "train": {"log_every": 3}})
    assert run.status == "failed" and "nonfinite_values" in [f.code for f in run.findings]
    acc = events(out / "tensorboard")
    steps = [e.step for e in acc.Scalars("step/train_loss")]
    assert steps and all(s % 3 == 0 for s in steps) and steps == sorted(steps)
    texts = [e.tensor_proto.string_val[0].decode() for e in acc.Tensors("doctor/findings/text_summary")]
    assert any("nonfinite_values" in t for t in texts)


def test_trackers_stay_off_when_not_asked(tmp_path: Path) -> None:
    x, y, xv, yv = digits(160)
    out = tmp_path / "plain"
    gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=1, out=out, **QUIET)
    assert not (out / "tensorboard").exists() and not (out / "metrics.csv").exists()
    assert not (out / "mlflow_run.json").exists()


# ------------------------------------------------------------------------------------------- CSV


def test_csv_holds_the_epoch_rows(tmp_path: Path) -> None:
    out = tmp_path / "csv"
    gradwise.train(None, ["data.dataset=iris", "model.name=mlp", "train.epochs=3", "track=csv",
                          "train.progress=none", f"out={out}"])
    table = pd.read_csv(out / "metrics.csv")
    rows = metrics_rows(out)
    assert list(table["epoch"]) == [1, 2, 3]
    for column in ("train_loss", "val_loss", "val_accuracy", "val_f1", "lr"):
        assert table[column].tolist() == pytest.approx([r[column] for r in rows], rel=1e-12)


# ------------------------------------------------------------------------------------------- MLflow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One local MLflow store for the module: creating its tables takes MLflow ~10 s."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_mlflow_records_params_metrics_and_artifacts(tmp_path: Path, store: str) -> None:
    from mlflow import MlflowClient

    out = tmp_path / "ml"
    run = nan_run(out, {"name": "faulty", "track": {"use": ["mlflow"], "mlflow": {"uri": store, "experiment": "t"}},
                        "train": {"log_every": 2}})
    client = MlflowClient(store)
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    record = client.get_run(run_id)
    assert record.info.run_name == "faulty" and record.info.status == "FAILED"  # the doctor stopped it
    assert record.data.params["optim.lr"] == "5.0" and record.data.params["optim.name"] == "sgd"
    assert record.data.tags["gradwise.findings"].startswith("nonfinite_values")
    steps = [m.step for m in client.get_metric_history(run_id, "step/train_loss")]
    assert steps and all(s % 2 == 0 for s in steps)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"findings.json", "summary.json", "config.yaml"} <= artifacts
    assert ("report.html" in artifacts) == (out / "report.html").exists()
    local = Path(client.download_artifacts(run_id, "findings.json", str(tmp_path)))
    assert json.loads(local.read_text())[0]["code"] == "nonfinite_values" == run.findings[0].code
    # it stopped in its first epoch: no checkpoint was written, none is logged
    assert not list((out / "checkpoints").glob("*.pt")) and "checkpoints" not in artifacts


def test_mlflow_test_metrics_and_a_resumed_run_continue_one_mlflow_run(tmp_path: Path, store: str) -> None:
    from mlflow import MlflowClient

    out = tmp_path / "iris"
    common = ["data.dataset=iris", "model.name=mlp", "train.progress=none", "track=mlflow",
              f"track.mlflow.uri={store}", "track.mlflow.experiment=t"]
    first = gradwise.train(None, [*common, "train.epochs=2", "train.early_stopping.enabled=false", f"out={out}"])
    client = MlflowClient(store)
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    record = client.get_run(run_id)
    assert record.info.status == "FINISHED"
    assert record.data.metrics["test_f1"] == pytest.approx(first.summary["test"]["test_f1"])
    assert record.data.metrics["val_f1"] == pytest.approx(first.history[-1]["val_f1"])
    history = client.get_metric_history(run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r["train_loss"]))
                                                    for r in metrics_rows(out)]
    assert record.data.params["data.dataset"] == "iris"
    assert {"summary.json", "config.yaml", "checkpoints"} <= {a.path for a in client.list_artifacts(run_id)}
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/best.pt"]
    gradwise.train(None, ["train.epochs=3"], resume=out)
    assert json.loads((out / "mlflow_run.json").read_text())["run_id"] == run_id
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2, 3]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_tune_study_is_a_parent_run_with_nested_trials(tmp_path: Path, store: str) -> None:
    from mlflow import MlflowClient

    from gradwise.tune.command import tune

    config = tmp_path / "tune.yaml"
    config.write_text("data: {dataset: iris}\nmodel: {name: mlp}\ntrain: {epochs: 1, progress: none}\n"
                      "doctor: {enabled: false}\n"
                      f"track: {{use: [mlflow], mlflow: {{uri: '{store}', experiment: study}}}}\n"
                      "tune:\n  metric: val_f1\n  trials: 2\n  sampler: random\n"
                      "  space:\n    optim.lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n")
    assert tune(config, out=tmp_path / "study") == 0
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("study")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("gradwise.role") == "study"]
    assert len(parents) == 1 and parents[0].data.params["metrics"] == "val_f1"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["gradwise.trial"] for r in children) == ["0", "1"]
    assert all(r.data.tags["gradwise.trial_state"] == "complete" for r in children)
    for child in children:
        assert child.data.metrics["objective/val_f1"] == pytest.approx(
            max(r["val_f1"] for r in metrics_rows(Path(child.data.tags["gradwise.dir"]))))
    assert len(client.get_metric_history(parents[0].info.run_id, "val_f1")) == 2


def test_an_unreachable_tracking_server_is_a_warning_not_a_failed_run(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """The tracker fails (nothing listens on port 9): one warning line, the run completes, and the URI's
    password is in neither the warning nor config.yaml."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    out = tmp_path / "offline"
    run = gradwise.train(None, ["data.dataset=iris", "model.name=mlp", "train.epochs=2", "train.progress=none",
                                "track=[mlflow,csv]", "track.mlflow.uri=http://alice:s3cr3t-pw@127.0.0.1:9",
                                f"out={out}"])
    assert run.status == "completed" and len(pd.read_csv(out / "metrics.csv")) == 2
    printed = capsys.readouterr().out
    assert "warning: the mlflow tracker failed" in printed and "s3cr3t-pw" not in printed
    assert "http://alice:***@127.0.0.1:9" in (out / "config.yaml").read_text()
    assert "s3cr3t-pw" not in (out / "config.yaml").read_text()


# ------------------------------------------------------------------------------------------- missing packages


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow"])
def test_a_missing_tracker_package_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     tracker: str) -> None:
    monkeypatch.setitem(sys.modules, tracker, None)  # `import tensorboard` now fails as if not installed
    out = tmp_path / "missing"
    with pytest.raises(ConfigError, match=rf"asks for {tracker}.*pip install 'gradwise\[track\]'"):
        gradwise.train(None, ["data.dataset=iris", "model.name=mlp", "train.epochs=1", "train.progress=none",
                              f"track=[csv,{tracker}]", f"out={out}"])
    assert not (out / "metrics.jsonl").exists()  # refused before training


def test_a_missing_tracker_package_stops_a_study_before_its_trials(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from gradwise.tune.command import tune

    monkeypatch.setitem(sys.modules, "mlflow", None)
    config = tmp_path / "tune.yaml"
    config.write_text("data: {dataset: iris}\nmodel: {name: mlp}\ntrack: [mlflow]\n"
                      "tune:\n  trials: 2\n  space:\n    optim.lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n")
    with pytest.raises(ConfigError, match="pip install 'gradwise\\[track\\]'"):
        tune(config, out=tmp_path / "study")
    assert not (tmp_path / "study" / "trial-0000").exists()


def test_a_fit_refused_at_its_start_leaves_no_tracker_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Early stopping refuses an unknown monitor in on_fit_start, before the trackers start: the one error, no
    warning from trackers that never ran."""
    with pytest.raises(ConfigError, match="val_nope"):
        gradwise.train(None, ["data.dataset=iris", "model.name=mlp", "train.epochs=1", "train.progress=none",
                              "train.early_stopping.monitor=val_nope", "track=[tensorboard,mlflow,csv]",
                              f"out={tmp_path / 'refused'}"])
    assert "tracker failed" not in capsys.readouterr().out
