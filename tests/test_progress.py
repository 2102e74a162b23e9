"""Progress output through the public API: the run header, plain lines in long epochs, the bar's frames."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from rich.console import Console
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn

import gradwise
from gradwise.train import callbacks


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x = StandardScaler().fit_transform(x[:1500]).astype("float32")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y[:1500]).long()
    return xt[:1200], yt[:1200], xt[1200:], yt[1200:]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))  # 4160 + 650 = 4810 parameters


def test_header_names_device_data_model_and_settings_literally(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    x, y, xv, yv = digits()
    model = mlp()
    model[0].weight.requires_grad_(False)  # 4096 frozen: 714 of 4810 trainable
    out = tmp_path / "run[red]1[/red]"
    gradwise.fit(model, (x, y), val=(xv[:200], yv[:200]), test=(xv[200:], yv[200:]), loss="cross_entropy",
                 epochs=1, batch_size=64, lr=0.01, patience=7, name="[bold]demo[dim]", out=out, progress="plain",
                 doctor=False)
    text = capsys.readouterr().out
    header = text.split("epoch 1/1")[0].strip().splitlines()
    assert 2 <= len(header) <= 4, header
    head = "\n".join(header)
    # user text is printed as given: rich markup must not eat the brackets
    assert "[bold]demo[dim]" in head and str(out) in head
    assert "cpu" in head and "fp32" in head and f"torch threads {torch.get_num_threads()}" in head
    assert re.search(r"train 1,200\b.*val 200\b.*test 100\b", head), head
    assert "Sequential" in head and "714 trainable / 4,810" in head
    for part in ("adamw", "lr 0.01", "batch 64", "epochs 1", "warmup_cosine", "patience 7"):
        assert part in head, part


def test_no_output_at_all_with_progress_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y, _, _ = digits()
    gradwise.fit(mlp(), (x, y), loss="cross_entropy", epochs=1, out=tmp_path / "r", progress="none", doctor=False)
    assert capsys.readouterr().out == ""


def test_plain_output_shows_progress_inside_long_epochs_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, xv, yv = digits()
    kw = {"loss": "cross_entropy", "epochs": 2, "batch_size": 32, "doctor": False, "progress": "plain"}
    # short epochs (well under the ~30 s between lines): one line per epoch, nothing in between
    gradwise.fit(mlp(), (x, y), val=(xv, yv), out=tmp_path / "short", **kw)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]

    # an epoch that takes "long": with no time floor, lines come at most every 10% of the epoch's steps
    monkeypatch.setattr(callbacks, "PLAIN_EVERY_SECONDS", 0.0)
    steps: list[list[tuple[float, int]]] = [[], []]

    class Record(gradwise.Callback):
        def on_batch_end(self, trainer: gradwise.train.loop.Trainer) -> None:
            steps[trainer.epoch].append((float(trainer.last_loss), len(trainer.last_batch[1])))

    gradwise.fit(mlp(), (x, y), val=(xv, yv), out=tmp_path / "long", callbacks=[Record()], **kw)
    text = capsys.readouterr().out
    progress = [line for line in text.splitlines() if re.match(r"epoch \d/2 +step", line)]
    per_epoch = len(x) // 32 + 1  # 38 steps: a line every 4 steps at most, none on the last step
    assert len(progress) == 2 * 9, text
    for line in progress:
        epoch, step = map(int, re.search(r"epoch (\d)/2 +step (\d+)/(\d+)", line).groups()[:2])
        assert step % 4 == 0 and step < per_epoch
        assert "samples/s" in line
        # the loss shown is the sample-weighted mean of the epoch so far, not the last batch's
        done = steps[epoch - 1][:step]
        mean = sum(v * n for v, n in done) / sum(n for _, n in done)
        shown = float(re.search(r"loss (\d+\.\d+)", line).group(1))
        assert shown == pytest.approx(mean, abs=6e-5), (line, mean, done[-1][0])


def test_epoch_lines_show_throughput(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y, xv, yv = digits()
    gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=2, out=tmp_path / "r", doctor=False,
                 progress="plain")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and all(re.search(r"[\d,]+ samples/s", line) for line in lines), lines


def test_bar_starts_at_epoch_1_and_prints_each_epochs_metrics_once(tmp_path: Path) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160, highlight=False)
    run = gradwise.train(None, ["data.dataset=digits", "model.name=mlp", "train.epochs=3", "train.progress=bar",
                                "doctor.enabled=false", f"out={tmp_path / 'r'}"], console=console)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())  # without the terminal's control codes
    assert "epoch 0" not in text
    assert "epoch 1/3" in text
    # each epoch's metrics appear once (the printed line), not again in the bar's own text
    for row in run.history:
        assert text.count(f"val_loss {row['val_loss']:.4f}") == 1, text
