"""data.stream: Parquet tables trained in streamed row groups (gradwise.data.stream).

The churn example (examples/data/customers.csv, 2012 messy rows) is written as a folder of Parquet files with small
row groups, so every test streams many units; the in-memory path on the same files is the reference.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("pyarrow")

import gradwise  # noqa: E402
from gradwise.cli import main  # noqa: E402
from gradwise.config import RunConfig  # noqa: E402
from gradwise.data import load_data, make_loaders_from_bundle  # noqa: E402
from gradwise.data import stream as stream_mod  # noqa: E402
from gradwise.train.checkpoint import load_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "examples" / "data" / "customers.csv"
FEATURES = ["tenure_months", "age", "monthly_charges", "support_calls", "plan", "contract", "region",
            "paperless_billing"]


def churn_frame() -> pd.DataFrame:
    frame = pd.read_csv(CHURN)
    frame.insert(0, "rid", np.arange(len(frame), dtype=np.int64))  # a row id the batches can be traced by
    return frame


def write_dir(frame: pd.DataFrame, folder: Path, files: int = 4, row_group: int = 150) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_parquet(folder / f"part-{k}.parquet", row_group_size=row_group, index=False)
    return folder


@pytest.fixture
def split_files(tmp_path: Path) -> dict[str, Path]:
    """The churn rows as a training folder of 4 files (row groups of 150) plus a val file and a test file."""
    frame = churn_frame()
    train = write_dir(frame.iloc[:1400], tmp_path / "train")
    frame.iloc[1400:1700].to_parquet(tmp_path / "val.parquet", index=False)
    frame.iloc[1700:].to_parquet(tmp_path / "test.parquet", index=False)
    return {"train": train, "val": tmp_path / "val.parquet", "test": tmp_path / "test.parquet"}


def data_cfg(**data: Any) -> Any:
    return RunConfig.model_validate({"data": data}).data


# --------------------------------------------------------------------------------------------- (1) statistics


@pytest.mark.parametrize("options", [
    {"missing": "median", "scale": "standard", "outliers": "iqr_clip", "outlier_threshold": 3.0},
    {"missing": "mean", "scale": "minmax", "outliers": "zscore_clip"},
    {"missing": "most_frequent", "scale": "robust", "options": {"max_categories": 3}},
    {"missing": "drop", "scale": "standard", "outliers": "iqr_drop"},
])
def test_streamed_statistics_equal_the_in_memory_fit(split_files: dict[str, Path], options: dict[str, Any]) -> None:
    base = {"dataset": str(split_files["train"]), "target": "churn", "features": FEATURES,
            "val_file": str(split_files["val"]), "test_file": str(split_files["test"]), **options}
    memory = load_data(data_cfg(**base, stream=False), 0)
    streamed = load_data(data_cfg(**base, stream=True), 0)
    a, b = memory.preprocessor, streamed.preprocessor
    assert memory.report.get("stream") is None and streamed.report["stream"]["streamed"] is True
    assert streamed.report["stream"]["row_groups"] > 8  # really read in pieces
    assert a.feature_names == b.feature_names and a.numeric == b.numeric and a.categorical == b.categorical
    # exact statistics: moments merged chunk by chunk agree with sklearn's one-shot fit to float rounding
    for name in ("mean_", "scale_", "min_", "center_"):
        if hasattr(b.scaler, name):
            np.testing.assert_allclose(getattr(b.scaler, name), getattr(a.scaler, name), rtol=1e-12, atol=1e-12)
    # sampled statistics (medians, quantiles, numeric modes): exact here, the sample holds every training row
    assert streamed.report["stream"]["statistics"]["sample_is_every_row"] is True
    if a.num_imputer is not None or b.num_imputer is not None:
        np.testing.assert_allclose(b.num_imputer.statistics_, a.num_imputer.statistics_, rtol=1e-12)
        assert list(b.cat_imputer.statistics_) == list(a.cat_imputer.statistics_)
    assert [list(c) for c in b.encoder.categories_] == [list(c) for c in a.encoder.categories_]
    rare_a = getattr(a.encoder, "infrequent_categories_", None) or [None] * len(a.categorical)
    assert [None if r is None else list(r) for r in b.encoder.infrequent_categories_] == \
        [None if r is None else list(r) for r in rare_a]
    assert b.clip_bounds.keys() == a.clip_bounds.keys()
    for c in a.clip_bounds:
        np.testing.assert_allclose(b.clip_bounds[c], a.clip_bounds[c], rtol=1e-12)
    assert b.ranges.keys() == a.ranges.keys()  # clipped to fences that may differ in the last bit (z-score)
    for c in a.ranges:
        np.testing.assert_allclose(b.ranges[c], a.ranges[c], rtol=1e-12)
    assert b.labels.classes == a.labels.classes
    # the same transform: validation and test tensors agree, and so does what data_report.json says about them
    for split in ("val", "test"):
        np.testing.assert_allclose(getattr(streamed, split)[0].numpy(), getattr(memory, split)[0].numpy(), atol=1e-5)
        assert torch.equal(getattr(streamed, split)[1], getattr(memory, split)[1])
    assert streamed.report["missing"] == memory.report["missing"]
    assert streamed.report["categories_cleaned"] == memory.report["categories_cleaned"]
    assert streamed.class_counts == memory.class_counts
    if options.get("outliers", "").endswith("_clip"):
        assert streamed.report["outliers"]["clipped"] == memory.report["outliers"]["clipped"]
    elif "outliers" in options:  # the training rows outside the fences are dropped, as in memory
        assert streamed.report["outliers"]["rows_dropped"] == memory.report["outliers"]["rows_dropped"] > 0
    assert streamed.report["rows"] == memory.report["rows"]
    # what predict loads (preprocess.json) transforms new rows as the streamed fit does
    loaded = type(b).load(b.save(split_files["train"].parent / "preprocess.json"))
    rows = pd.read_parquet(split_files["test"])[FEATURES].dropna()  # data.missing=drop cannot fill gaps
    assert torch.equal(loaded.transform_new_rows(rows, "rows")[0], b.transform_new_rows(rows, "rows")[0])


def test_streamed_regression_targets_are_scaled_as_in_memory(split_files: dict[str, Path]) -> None:
    base = {"dataset": str(split_files["train"]), "target": "monthly_charges", "missing": "mean",
            "features": [c for c in FEATURES if c != "monthly_charges"],
            "val_file": str(split_files["val"]), "test_file": str(split_files["test"])}
    memory = load_data(data_cfg(**base, stream=False), 0)
    streamed = load_data(data_cfg(**base, stream=True), 0)
    assert streamed.task == memory.task == "regression"
    np.testing.assert_allclose(streamed.preprocessor.target_mean, memory.preprocessor.target_mean, rtol=1e-6)
    np.testing.assert_allclose(streamed.preprocessor.target_scale, memory.preprocessor.target_scale, rtol=1e-6)
    np.testing.assert_allclose(streamed.test[1].numpy(), memory.test[1].numpy(), atol=1e-6)


def test_a_table_larger_than_the_sample_reports_its_sampled_statistics(split_files: dict[str, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_mod, "SAMPLE_ROWS", 500)
    base = {"dataset": str(split_files["train"]), "target": "churn", "features": FEATURES, "missing": "median",
            "val_file": str(split_files["val"]), "test_file": str(split_files["test"])}
    streamed = load_data(data_cfg(**base, stream=True), 0)
    memory = load_data(data_cfg(**base, stream=False), 0)
    stats = streamed.report["stream"]["statistics"]
    assert stats["sample_rows"] == 500 and stats["training_rows"] == 1400 and not stats["sample_is_every_row"]
    assert stats["from_sample"] == ["median imputation"]
    # a median from 500 of 1400 rows: close to the exact one (within a tenth of the column's spread)
    spread = np.asarray(memory.preprocessor.scaler.scale_)
    diff = np.abs(streamed.preprocessor.num_imputer.statistics_ - memory.preprocessor.num_imputer.statistics_)
    assert (diff < 0.1 * spread).all(), (diff, spread)
    # the min/max are exact whatever the sample size
    assert streamed.preprocessor.ranges == memory.preprocessor.ranges  # no clipping here: the same bits


# --------------------------------------------------------------------------------------------- (2) rows per epoch


def traced_bundle(tmp_path: Path, **extra: Any) -> tuple[Any, Any]:
    """A streamed churn folder whose first feature is the row id, unscaled (so each batch row names its row)."""
    folder = write_dir(churn_frame(), tmp_path / "churn", files=3, row_group=100)
    cfg = RunConfig.model_validate({"seed": 5, "train": {"batch_size": 64}, "data": {
        "dataset": str(folder), "target": "churn", "features": ["rid", *FEATURES], "split_key": "customer_id",
        "missing": "median", "scale": "none", "stream": True, "shuffle_buffer": 300, **extra}})
    return load_data(cfg.data, cfg.seed), cfg


def ids(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
    return np.concatenate([x[:, 0].numpy() for x, _ in batches]).astype(np.int64)


def test_every_training_row_once_per_epoch_and_never_a_held_out_one(tmp_path: Path) -> None:
    bundle, cfg = traced_bundle(tmp_path)
    train, val, test = make_loaders_from_bundle(bundle, cfg)
    frame = churn_frame()
    held = {s: set(getattr(bundle, s)[0][:, 0].numpy().astype(np.int64).tolist()) for s in ("val", "test")}
    assert held["val"] and held["test"] and not held["val"] & held["test"]
    # the split follows the key: every row of a customer (the file has double-exported rows) is in one split
    for split_rows in held.values():
        ids_there = set(frame.loc[frame.rid.isin(split_rows), "customer_id"])
        assert set(frame.loc[frame.customer_id.isin(ids_there), "rid"]) == split_rows
    expected = set(frame.rid) - held["val"] - held["test"]
    orders = []
    for epoch in range(2):
        train.set_epoch(epoch)
        batches = list(train)
        seen = ids(batches)
        assert len(batches) == len(train) and len(seen) == train.dataset_size == len(expected)
        assert sorted(seen.tolist()) == sorted(expected)  # each training row exactly once
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])  # shuffled anew each epoch
    # the shuffle crosses row groups: the first batch holds rows of several files' row groups
    assert len({int(r) // 100 for r in orders[0][:64]}) > 2
    # the val/test rows of the folder are the rows the hash put there, and not one of them was trained on
    assert bundle.report["rows"] == {"train": len(expected), "val": len(held["val"]), "test": len(held["test"])}


def test_a_last_batch_of_one_row_is_left_out_as_in_memory(tmp_path: Path) -> None:
    bundle, cfg = traced_bundle(tmp_path)
    train, _, _ = make_loaders_from_bundle(bundle, cfg)
    n = train.dataset_size
    size = next(b for b in range(5, 64) if n % b == 1)  # a batch size that leaves one row over
    train.resize(size)
    left = []
    for epoch in range(2):
        train.set_epoch(epoch)
        seen = ids(list(train))
        assert len(train) == n // size and len(seen) == n - 1  # BatchNorm cannot normalize a batch of one
        left.append(next(iter(set(range(len(churn_frame()))) - set(seen.tolist()) - held_rows(bundle))))
    assert left[0] != left[1]  # a different row each epoch: none is lost for good


def held_rows(bundle: Any) -> set[int]:
    return {int(r) for s in ("val", "test") for r in getattr(bundle, s)[0][:, 0].tolist()}


def test_a_resumed_epoch_continues_the_same_row_order(tmp_path: Path) -> None:
    """set_epoch(epoch, skip) -- what the loop does on --resume -- yields exactly the rest of the epoch, reading only
    from the window that holds the first row wanted."""
    bundle, cfg = traced_bundle(tmp_path)
    train, _, _ = make_loaders_from_bundle(bundle, cfg)
    train.set_epoch(3)
    full = list(train)
    read_all = train.rows_read
    train.rows_read = 0
    train.set_epoch(3, skip_batches=17)
    rest = list(train)
    assert len(rest) == len(full) - 17
    for (xa, ya), (xb, yb) in zip(full[17:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert train.rows_read < read_all  # the windows before batch 17 were not read again
    # the window read ahead on a thread changes nothing: the same batches without it
    stream_mod.PREFETCH = False
    try:
        train.set_epoch(3)
        assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(full, train, strict=True))
    finally:
        stream_mod.PREFETCH = True
    state = train.state_dict()
    assert state["epoch"] == 3


def test_validation_rows_too_many_to_hold_are_streamed_for_evaluation(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    held, cfg = traced_bundle(tmp_path / "held")
    monkeypatch.setattr(stream_mod, "EVAL_MEMORY_BYTES", 1000)
    streamed, _ = traced_bundle(tmp_path / "streamed")
    assert streamed.val is None and streamed.test is None
    assert streamed.report["stream"]["validation_and_test"].startswith("streamed")
    _, val, test = make_loaders_from_bundle(streamed, cfg)
    for loader, split in ((val, held.val), (test, held.test)):
        assert isinstance(loader, stream_mod.StreamLoader) and loader.dataset_size == len(split[0])
        loader.set_epoch(0)
        batches = list(loader)
        # the same rows in the same order (the table's), transformed the same way, in batches of the training size
        assert torch.equal(torch.cat([x for x, _ in batches]), split[0])
        assert torch.equal(torch.cat([y for _, y in batches]), split[1])
        assert max(len(y) for _, y in batches) == cfg.train.batch_size


def test_data_parallel_processes_share_each_global_batch(tmp_path: Path) -> None:
    bundle, cfg = traced_bundle(tmp_path)
    one, _, _ = make_loaders_from_bundle(bundle, cfg)
    one.resize(128)
    one.set_epoch(1)
    whole = [set(x[:, 0].numpy().astype(np.int64).tolist()) for x, _ in one]
    parts = []
    for rank in range(2):
        loader, _, _ = make_loaders_from_bundle(bundle, cfg)
        loader.shard(rank, 2)
        loader.set_epoch(1)
        parts.append([set(x[:, 0].numpy().astype(np.int64).tolist()) for x, _ in loader])
    assert len(parts[0]) == len(parts[1])
    # global batch i (64 rows x 2 processes) is batch i of one process with batch 128
    for i, (a, b) in enumerate(zip(*parts, strict=True)):
        assert not a & b and a | b == whole[i]


# --------------------------------------------------------------------------------------------- (3) SIGKILL, resume

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    import gradwise
    from gradwise.train.callbacks import Callback

    data, out, mode, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    class Killer(Callback):
        def on_batch_end(self, trainer):
            if trainer.step == kill_at:
                trainer.checkpoints.flush()  # the step's checkpoint is on disk: the resume starts from it
                os.kill(os.getpid(), signal.SIGKILL)

    overrides = [f"data.dataset={data}", "data.target=churn", "data.stream=true", "data.shuffle_buffer=250",
                 "data.split_key=customer_id", "data.missing=median", "model.name=mlp", "model.widths=[32]",
                 "model.dropout=0.2", "train.epochs=2", "train.batch_size=32", "train.checkpoint_every=5",
                 "train.progress=none", "train.threads=1", "doctor.enabled=false", f"out={out}", "seed=11"]
    if mode == "resume":
        run = gradwise.train(resume=out)
    else:
        run = gradwise.train(None, overrides, callbacks=[Killer()] if mode == "kill" else [])
    print("STATUS", run.status)
    torch.save(run.model.state_dict(), out + "/final_weights.pt")
""")


def _script(tmp_path: Path, data: Path, out: Path, mode: str, kill_at: int = -1) -> subprocess.CompletedProcess:
    script = tmp_path / "stream_script.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(data), str(out), mode, str(kill_at)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # three `gradwise train` processes: ~45 s on the shared 2-core machine
def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path: Path) -> None:
    data = write_dir(churn_frame(), tmp_path / "churn", files=3, row_group=120)
    full = _script(tmp_path, data, tmp_path / "full", "plain")
    assert "STATUS completed" in full.stdout, full.stderr
    killed = _script(tmp_path, data, tmp_path / "cut", "kill", kill_at=58)  # epoch 2: 43 steps per epoch
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["batch_in_epoch"] > 0  # the checkpoint is inside the second epoch
    resumed = _script(tmp_path, data, tmp_path / "cut", "resume")
    assert "STATUS completed" in resumed.stdout, resumed.stderr
    a = torch.load(tmp_path / "full" / "final_weights.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "final_weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    full_rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in full_rows]


def test_resuming_on_changed_files_is_refused(tmp_path: Path) -> None:
    data = write_dir(churn_frame(), tmp_path / "churn", files=3, row_group=200)
    out = tmp_path / "run"
    args = [f"data.dataset={data}", "data.target=churn", "data.stream=true", "data.missing=median",
            "model.name=mlp", "model.widths=[8]", "train.epochs=1", "train.progress=none", "doctor.enabled=false",
            f"out={out}"]
    assert gradwise.train(None, args).status == "completed"
    part = data / "part-1.parquet"
    pd.read_parquet(part).iloc[:-5].to_parquet(part, row_group_size=200, index=False)  # five rows fewer
    with pytest.raises(gradwise.errors.DataError, match="changed since it was trained"):
        gradwise.train(resume=out, overrides=["train.epochs=2"])


# --------------------------------------------------------------------------------------------- (4) accuracy


@pytest.mark.slow  # two 12-epoch runs with reports: ~45 s on the shared 2-core machine
def test_streamed_training_reaches_the_in_memory_accuracy(split_files: dict[str, Path], tmp_path: Path) -> None:
    common = [f"data.dataset={split_files['train']}", f"data.val_file={split_files['val']}",
              f"data.test_file={split_files['test']}", "data.target=churn", f"data.features=[{','.join(FEATURES)}]",
              "data.missing=median", "data.outliers=iqr_clip", "data.outlier_threshold=3.0", "model.name=mlp",
              "model.widths=[64,32]", "train.epochs=12", "train.batch_size=64", "train.progress=none",
              "doctor.enabled=false", "train.early_stopping.enabled=false", "seed=3"]
    memory = gradwise.train(None, [*common, "data.stream=false", f"out={tmp_path / 'memory'}"])
    streamed = gradwise.train(None, [*common, "data.stream=true", "data.shuffle_buffer=300",
                                     f"out={tmp_path / 'streamed'}"])
    acc_m, acc_s = memory.summary["test"]["test_accuracy"], streamed.summary["test"]["test_accuracy"]
    assert acc_m > 0.72 and acc_s > 0.72  # predicting "no" for everyone scores ~0.68
    assert abs(acc_m - acc_s) < 0.04, (acc_m, acc_s)
    report = json.loads((tmp_path / "streamed" / "data_report.json").read_text())
    assert report["stream"]["why"] == "data.stream=true" and report["rows"]["train"] == 1400


# --------------------------------------------------------------------------------------------- (5) one-liners


def _cli_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args, "train.epochs=1", "train.progress=none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_bad_stream_input_is_one_line(split_files: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = ["model.name=mlp", f"out={tmp_path / 'run'}"]
    line = _cli_error(capsys, [f"data.dataset={CHURN}", "data.target=churn", "data.stream=true", *out])
    assert "Parquet" in line and "to_parquet" in line
    folder = f"data.dataset={split_files['train']}"
    line = _cli_error(capsys, [folder, "data.target=churn", "data.stream=true", "data.split_key=cust_id", *out])
    assert "data.split_key = 'cust_id'" in line and "customer_id" in line
    line = _cli_error(capsys, [folder, "data.target=churn", "data.stream=true", "data.drop_duplicates=true", *out])
    assert "data.drop_duplicates" in line and "data.stream=false" in line
    line = _cli_error(capsys, [folder, "data.target=churn", "data.stream=true", "data.text=[region]", *out])
    assert "data.text" in line and "data.stream=false" in line


def test_auto_streams_only_a_table_too_big_for_memory(split_files: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"dataset": str(split_files["train"]), "target": "churn", "features": FEATURES, "missing": "median"}
    assert "stream" not in load_data(data_cfg(**base), 0).report  # the default, auto: a small table is loaded
    monkeypatch.setattr(stream_mod, "available_memory", lambda: 100_000)
    report = load_data(data_cfg(**base), 0).report
    assert report["stream"]["why"].startswith("data.stream=auto: the table is")
