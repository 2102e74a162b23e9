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
