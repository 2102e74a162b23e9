"""Config loading, overrides and the errors users see."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gradwise.config import RunConfig, load_config
from gradwise.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_are_filled_and_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None)
    assert cfg.optim.name == "adamw" and cfg.schedule.name == "warmup_cosine" and cfg.train.clip_grad == 1.0
    again = load_config(write(tmp_path, cfg.to_yaml()))
    assert again == cfg


def test_shorthand_and_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "optim: sgd\ntrain:\n  epochs: 3\n"),
                      ["optim.lr=3e-4", "train.epochs=20", "model.widths=[64, 32]", "train.clip_grad=null"])
    assert cfg.optim.name == "sgd" and cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.train.epochs == 20 and cfg.model.widths == [64, 32] and cfg.train.clip_grad is None


def test_unknown_key_suggests_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "optim:\n  lrr: 0.1\n"))
    assert "unknown key 'optim.lrr'" in str(e.value) and "optim.lr" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["trian.epochs=3"])
    assert "'trian'" in str(e.value) and "train" in str(e.value)


def test_wrong_type_and_range() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.epochs=many"])
    assert "train.epochs" in str(e.value) and "'many'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["optim.lr=-0.1"])
    assert "optim.lr" in str(e.value) and "-0.1" in str(e.value) and "positive" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.batch_size=0"])
    assert "train.batch_size" in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(write(tmp_path, "train:\n  epochs: [1\n"))
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_resolved_config_is_plain_yaml() -> None:
    data = yaml.safe_load(RunConfig().to_yaml())
    assert data["optim"]["name"] == "adamw" and data["train"]["early_stopping"]["monitor"] == "val_loss"


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "optim.lrr=0.1"], "Did you mean 'optim.lr'"),
    (["train", "optim.lr=-1"], "optim.lr"),
    (["train", "missing.yaml"], "does not exist"),
    (["train", "optim.name=adamm", "train.epochs=1"], "adam"),
    (["train", "train.epochs=0"], "train.epochs"),
])
def test_cli_errors_exit_2_without_traceback(args: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gradwise.cli", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ------------------------------------------------------------------ issue 18 item 12: inputs found by fuzzing


@pytest.mark.parametrize(("override", "needles"), [
    ("schedule.warmup=inf", ["schedule.warmup"]),
    ("seed=12345678901234567890123", ["seed", "4294967295"]),
    ("train.accumulate=12345678901234567890123", ["train.accumulate"]),
    ("name=a\x00b", ["name", "NUL"]),
    ("data.dataset=a\x00b", ["data.dataset", "NUL"]),
    ("out=a\x00b", ["out", "NUL"]),
    ("name=" + "n" * 300, ["name", "100 characters"]),
    ("data.dataset=" + "d" * 300, ["data.dataset", "255"]),
    ("out=" + "o" * 300, ["out", "255"]),
    ("out=/proc/x", ["out", "system folder"]),
    ("out=/etc/passwd", ["out", "existing file, not a directory"]),
    ("model.freeze=['*']", ["model.freeze", "nothing would train", "unfreeze_after"]),
    ("optim.lr=true", ["optim.lr", "boolean"]),
    ("train.epochs=true", ["train.epochs", "boolean"]),
    ("data.subsample=true", ["data.subsample", "boolean"]),
    ("model.widths=[64, true]", ["model.widths", "boolean"]),
    ("optim.lr=inf", ["optim.lr", "finite"]),
    ("optim.lr=1e300", ["optim.lr", "up to 1000"]),
    ("optim.lr=1e23", ["optim.lr", "up to 1000"]),
    ("optim.lr=1001", ["optim.lr", "up to 1000"]),
    ("optim.lr=5e-324", ["optim.lr", "denormal"]),
    ("optim.momentum=1e-310", ["optim.momentum", "denormal"]),
    ("optim.weight_decay=inf", ["optim.weight_decay", "finite"]),
    ("train.clip_grad=inf", ["train.clip_grad", "finite"]),
    ("optim.betas=[0.9, 1.5]", ["optim.betas"]),
    ("train.threads=0.0", ["train.threads"]),
    ("data.target=species", ["data.target", "built-in dataset", "own target"]),
    ("data..dataset=iris", ["data..dataset", "empty part"]),
    ("data.int=1", ["unknown key 'data.int'"]),
])
def test_fuzzed_inputs_are_clear_errors(override: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    msg = str(e.value)
    assert all(n in msg for n in needles), msg
    assert "\n" not in msg and len(msg) <= 400, msg
    assert "Did you mean 'data'?" not in msg  # data..dataset once answered "unknown key 'data'. Did you mean 'data'?"


def test_values_that_still_load() -> None:
    cfg = load_config(None, ["optim.lr=1000", "seed=4294967295", "optim.momentum=0", "data.dataset=my.csv",
                             "data.target=label", "model.freeze=[features]", "schedule.warmup=500", "out=runs/x"])
    assert cfg.optim.lr == 1000 and cfg.seed == 2**32 - 1 and cfg.data.target == "label"
    # freezing everything is fine when gradual unfreezing trains it later
    assert load_config(None, ["model.freeze=['*']", "model.unfreeze_after=2"]).model.freeze == ["*"]


def test_long_values_are_cut_in_messages() -> None:
    for override in ("name=" + "y" * 100_000, "train.epochs=" + "z" * 100_000, "optim.name=" + "q" * 5000):
        with pytest.raises(ConfigError) as e:
            load_config(None, [override])
        assert len(str(e.value)) <= 400 and "…" in str(e.value), str(e.value)[:500]
    with pytest.raises(ConfigError) as e:
        load_config(None, ["x" * 100_000 + "=1"])
    assert len(str(e.value)) <= 400


def test_one_line_for_several_problems_of_one_override() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data={a: 1, b: 2, c: 3}"])
    msg = str(e.value)
    assert "\n" not in msg and "data.a" in msg and "data.b" in msg


def test_urls_in_config_values_are_masked() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["tune.storage=[postgresql://user:secret@host/db]"])
    assert "secret" not in str(e.value) and "user:***@host" in str(e.value)


def test_unknown_early_stopping_monitor_stops_the_run_at_start(tmp_path: Path) -> None:
    from gradwise.api import train

    with pytest.raises(ConfigError) as e:
        train(None, ["data.dataset=iris", "model.name=mlp", "train.epochs=1", "train.progress=none",
                     "doctor.enabled=false", "train.early_stopping.monitor=val_acc", f"out={tmp_path / 'run'}"])
    msg = str(e.value)
    assert "train.early_stopping.monitor" in msg and "'val_acc'" in msg and "val_accuracy" in msg, msg


# ------------------------------------------------------------------ issue 18 item 14: storage passwords


@pytest.mark.parametrize("url", [
    "postgresql://user:secret@host:notaport/db",
    "postgresql+psycopg2://user:secret@host:5432/",
    "mysql://user:secret@host/db",
    "sqlite://user:secret@x/db",
    "postgresql://user:p@ss@secret@host:x/db",
])
def test_storage_errors_never_show_the_password(url: str, tmp_path: Path) -> None:
    from gradwise.tune.storage import parse_storage

    with pytest.raises(ConfigError) as e:
        parse_storage(url, tmp_path)
    assert "secret" not in str(e.value) and "***" in str(e.value), str(e.value)


def test_driver_errors_are_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from gradwise.tune import storage

    spec = storage.StorageSpec("postgresql", "postgresql+psycopg2://user:s3cr%40t@host:5432/db", None,
                               "postgresql+psycopg2://user:***@host:5432/db")

    class Boom(Exception):
        pass

    def fail(*args: object, **kwargs: object) -> None:  # as a driver that quotes its DSN would
        raise Boom("invalid dsn: host=host user=user password=s3cr@t dbname=db (from "
                   "postgresql+psycopg2://user:s3cr%40t@host:5432/db)")

    monkeypatch.setattr(storage, "PostgresLock", fail)
    monkeypatch.setattr(optuna.storages, "RDBStorage", fail)
    with pytest.raises(ConfigError) as e:
        storage.open_storage(spec)
    assert "s3cr" not in str(e.value) and "password=***" in str(e.value), str(e.value)


def test_mask_secrets() -> None:
    from gradwise.config import mask_secrets

    assert mask_secrets("postgresql://u:pw@h/db and x") == "postgresql://u:***@h/db and x"
    assert mask_secrets("dsn password='a b' host=h") == "dsn password=*** host=h"
    assert mask_secrets("no url here, user@host") == "no url here, user@host"
    assert mask_secrets("the server said hunter2", "hunter2") == "the server said ***"
