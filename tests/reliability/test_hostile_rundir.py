"""Opening a run directory never runs code from it (issue 18, item 1).

Two hostile directories: one whose preprocess.pkl is a pickle that runs a command when unpickled, one whose
config.yaml names a model.factory in a module that writes marker files when imported and when called. `gradwise
eval`, `predict` and `train --resume` (run through the CLI) must refuse them with exit status 2 and one line on
stderr, and must not create the markers; with GRADWISE_TRUSTED_MODULES (or trust_code=True) the factory run works.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradwise
from gradwise.errors import CheckpointError

FAST = ["train.epochs=1", "train.progress=none", "doctor.enabled=false"]
DIGITS = ["data.dataset=digits", *FAST]

# a factory module: importing it writes `imported`, calling make() writes `factory_ran` (both beside the module)
FACTORY_MODULE = '''
from pathlib import Path

from torch import nn

Path(__file__).with_name("imported").write_text("module code ran")


def make(input_shape, n_outputs):
    Path(__file__).with_name("factory_ran").write_text("factory ran")
    return nn.Sequential(nn.Flatten(), nn.Linear(int(input_shape[0]), n_outputs))
'''


class Payload:
    """Unpickling this runs a shell command that creates `marker` (the classic pickle attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch '{self.marker}'",)


def gw(*args: str, pythonpath: Path | None = None, env: dict[str, str] | None = None
       ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "GRADWISE_TRUSTED_MODULES"}  # only what a test allows
    full.update({"OMP_NUM_THREADS": "1", **(env or {})})
    if pythonpath is not None:
        full["PYTHONPATH"] = os.pathsep.join([str(pythonpath), full.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "gradwise.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=pythonpath or Path.cwd(), env=full)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_digits

    path = tmp_path_factory.mktemp("rows") / "rows.npy"
    np.save(path, load_digits().data[:5])
    return path


@pytest.fixture(scope="module")
def factory_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory trained from the user's own config with model.factory=evilmod:make, the module's folder)."""
    root = tmp_path_factory.mktemp("factory")
    code = root / "code"
    code.mkdir()
    (code / "evilmod.py").write_text(FACTORY_MODULE)
    sys.path.insert(0, str(code))
    try:  # training from your own config imports the factory as always
        gradwise.train(None, [*DIGITS, "model.factory=evilmod:make", f"out={root / 'run'}"])
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("evilmod", None)
    assert (code / "imported").exists() and (code / "factory_ran").exists()
    return root / "run", code


@pytest.fixture
def clean_factory(factory_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A fresh copy of the factory run and its module folder, no markers."""
    run, code = factory_run
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "code").mkdir()
    shutil.copy(code / "evilmod.py", tmp_path / "code" / "evilmod.py")
    return tmp_path / "run", tmp_path / "code"


@pytest.fixture(scope="module")
def builtin_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("builtin") / "run"
    gradwise.train(None, [*DIGITS, "model.name=mlp", f"out={out}"])
    return out


def commands(run: Path, rows: Path) -> dict[str, list[str]]:
    return {"eval": ["eval", str(run)], "predict": ["predict", str(run), str(rows)],
            "resume": ["train", "--resume", str(run), "train.progress=none"]}


@pytest.mark.parametrize("command", ["eval", "predict", "resume"])
def test_factory_of_a_run_directory_is_not_imported(clean_factory: tuple[Path, Path], rows: Path,
                                                    command: str) -> None:
    run, code = clean_factory
    before = sorted(p.name for p in run.rglob("*"))
    proc = gw(*commands(run, rows)[command], pythonpath=code)
    assert not (code / "imported").exists() and not (code / "factory_ran").exists()
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert "model.factory 'evilmod:make'" in line and "module 'evilmod'" in line
    assert "GRADWISE_TRUSTED_MODULES=evilmod" in line and "trust_code=True" in line
    assert sorted(p.name for p in run.rglob("*")) == before  # a refused resume leaves the directory as it was


@pytest.mark.parametrize("command", ["eval", "predict", "resume"])
def test_trusted_module_runs_the_factory(clean_factory: tuple[Path, Path], rows: Path, command: str) -> None:
    run, code = clean_factory
    proc = gw(*commands(run, rows)[command], pythonpath=code, env={"GRADWISE_TRUSTED_MODULES": "numpy, evilmod"})
    assert proc.returncode == 0, proc.stderr
    assert (code / "factory_ran").exists()


def test_prefix_must_match_whole_module_names(clean_factory: tuple[Path, Path], rows: Path) -> None:
    run, code = clean_factory
    proc = gw("eval", str(run), pythonpath=code, env={"GRADWISE_TRUSTED_MODULES": "evil"})
    assert proc.returncode == 2 and not (code / "imported").exists()


def test_trust_code_argument(clean_factory: tuple[Path, Path], rows: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradwise.inference import evaluate_run, predict

    run, code = clean_factory
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delenv("GRADWISE_TRUSTED_MODULES", raising=False)
    monkeypatch.delitem(sys.modules, "evilmod", raising=False)
    with pytest.raises(CheckpointError, match="opening a run directory does not run code"):
        predict(run, rows)
    with pytest.raises(CheckpointError):
        gradwise.train(resume=run, overrides=["train.progress=none"])
    assert not (code / "imported").exists()
    assert "accuracy" in evaluate_run(run, trust_code=True)
    assert len(predict(run, rows, trust_code=True)) == 5
    assert gradwise.train(resume=run, overrides=["train.progress=none"], trust_code=True).status == "completed"
    assert (code / "factory_ran").exists()
    monkeypatch.delitem(sys.modules, "evilmod", raising=False)


def test_any_module_function_is_refused(builtin_run: Path, tmp_path: Path) -> None:
    """The issue's example: model.factory: subprocess:getoutput."""
    from gradwise.inference import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(builtin_run, run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("factory: null", "factory: subprocess:getoutput"))
    with pytest.raises(CheckpointError, match="module 'subprocess'"):
        evaluate_run(run)


@pytest.fixture
def hostile_pickle(builtin_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a run as an older gradwise wrote it (preprocess.pkl, no preprocess.json), the pickle hostile."""
    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(builtin_run, run)
    (run / "preprocess.json").unlink(missing_ok=True)  # (missing_ok: before the fix it held no .json)
    (run / "preprocess.pkl").write_bytes(pickle.dumps(Payload(marker)))
    return run, marker


def test_payload_is_live(tmp_path: Path) -> None:
    """The pickle really runs its command when unpickled (so the tests below prove something)."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "live")))
    assert (tmp_path / "live").exists()


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_older_pickle_is_not_unpickled(hostile_pickle: tuple[Path, Path], rows: Path, command: str) -> None:
    run, marker = hostile_pickle
    proc = gw(*commands(run, rows)[command])
    assert not marker.exists()
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert "preprocess.pkl' was written by an older gradwise" in line and "not loaded" in line
    assert f"gradwise train --resume {run}" in line


def test_resume_rewrites_an_older_pickle_as_json(hostile_pickle: tuple[Path, Path], rows: Path) -> None:
    """The way on that the message gives: resume refits the preprocessing and writes preprocess.json."""
    run, marker = hostile_pickle
    proc = gw(*commands(run, rows)["resume"])
    assert not marker.exists()
    assert proc.returncode == 0, proc.stderr
    assert (run / "preprocess.json").exists() and not (run / "preprocess.pkl").exists()
    proc = gw(*commands(run, rows)["predict"])
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()


def test_damaged_json_is_one_line_exit_2(builtin_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(builtin_run, run)
    (run / "preprocess.json").write_text('{"format": "gradwise-preprocessor", "version": 2, "kind": "table"')
    proc = gw("eval", str(run))
    assert proc.returncode == 2, proc.stderr
    assert "preprocess.json' is not readable JSON" in one_line(proc)


@pytest.mark.parametrize("command", ["eval", "predict", "resume"])
def test_trust_code_flag_runs_the_factory(clean_factory: tuple[Path, Path], rows: Path, command: str) -> None:
    run, code = clean_factory
    proc = gw(*commands(run, rows)[command], "--trust-code", pythonpath=code)
    assert proc.returncode == 0, proc.stderr
    assert (code / "factory_ran").exists()
