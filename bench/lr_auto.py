"""`optim.lr: auto` (an LR range test before training) against the default learning rate, same epochs and seed.

Every pair trains twice through the public API (`gradwise.train(None, [overrides])`): once at the default LR that
gradwise gives the optimizer (3e-3: `optim.lr`'s default, for AdamW and for SGD alike) and once with `optim.lr=auto`.
Everything else is the default recipe (warmup + cosine schedule, early stopping, clip 1.0, batch 128) and the same
seed, so the two runs differ only in the LR. Printed per pair and optimizer: the default LR and its test metric, the
LR the finder picked and its test metric, the difference (auto - default, in points: accuracy or R² x 100) and the
seconds the LR range test took. With several seeds the metrics are means over seeds and the picked LR a geometric
mean.

Epochs: MNIST-1D mlp 15, cnn1d 5; digits mlp 15; Fashion-MNIST cnn2d 3, on the first 12000 training and 2000 test
images of Debian's files with 4000 training rows kept (`data.subsample`), so a CPU run takes minutes; diabetes mlp 30
(R²). These five pairs are the ones the rule was developed against; `--held-out` runs instead the pairs that were
not looked at while choosing the rule (wine mlp 30, breast_cancer mlp 20, iris mlp 40 epochs), as a table of their
own.

    OMP_NUM_THREADS=1 python bench/lr_auto.py [--quick] [--seeds 0 1 2] [--held-out] [--only digits-mlp ...]
"""

from __future__ import annotations

import argparse
import gzip
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gradwise
from gradwise import api
from gradwise.data.datasets import FASHION_MNIST_DIR

DEFAULT_LR = 3e-3  # OptimConfig.lr's default; gradwise has no per-optimizer default, so SGD gets it too
OPTIMIZERS = {"adamw": ["optim.name=adamw"], "sgd": ["optim.name=sgd", "optim.momentum=0.9"]}


@dataclass(frozen=True)
class Pair:
    name: str
    overrides: tuple[str, ...]
    epochs: int
    metric: str  # test metric, higher is better


def fashion_subset(root: Path, train_rows: int = 12000, test_rows: int = 2000) -> Path:
    """The first rows of Debian's Fashion-MNIST IDX files, rewritten as IDX files under ``root``.

    gradwise reads Fashion-MNIST from a folder of IDX files (`data.options.root`); a smaller copy keeps the
    validation and test passes (6000 + 10000 images otherwise) from dominating a CPU benchmark. Rows are in the
    files' own (shuffled, class-balanced) order.
    """
    root.mkdir(parents=True, exist_ok=True)
    for stem, rows in (("train-images-idx3-ubyte", train_rows), ("train-labels-idx1-ubyte", train_rows),
                       ("t10k-images-idx3-ubyte", test_rows), ("t10k-labels-idx1-ubyte", test_rows)):
        raw = gzip.decompress((FASHION_MNIST_DIR / f"{stem}.gz").read_bytes())
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        per_row = math.prod(dims[1:])
        header = raw[:4] + rows.to_bytes(4, "big") + raw[8: 4 + 4 * ndim]
        body = raw[4 + 4 * ndim: 4 + 4 * ndim + rows * per_row]
        (root / stem).write_bytes(header + body)
    return root


def pairs(fashion_root: Path | None, held_out: bool) -> list[Pair]:
    if held_out:
        return [Pair("wine-mlp", ("data.dataset=wine", "model.name=mlp"), 30, "test_accuracy"),
                Pair("breast_cancer-mlp", ("data.dataset=breast_cancer", "model.name=mlp"), 20, "test_accuracy"),
                Pair("iris-mlp", ("data.dataset=iris", "model.name=mlp"), 40, "test_accuracy")]
    out = [Pair("mnist1d-mlp", ("data.dataset=mnist1d", "model.name=mlp"), 15, "test_accuracy"),
           Pair("mnist1d-cnn1d", ("data.dataset=mnist1d", "model.name=cnn1d"), 5, "test_accuracy"),
           Pair("digits-mlp", ("data.dataset=digits", "model.name=mlp"), 15, "test_accuracy")]
    if fashion_root is not None:
        out.append(Pair("fashion-cnn2d", ("data.dataset=fashion_mnist", "model.name=cnn2d", "data.subsample=4000",
                                          f"data.options.root={fashion_root}"), 3, "test_accuracy"))
    out.append(Pair("diabetes-mlp", ("data.dataset=diabetes", "model.name=mlp"), 30, "test_r2"))
    return out


def train_once(pair: Pair, optimizer: str, lr: str, seed: int, tmp: Path) -> dict[str, Any]:
    """One run; returns the test metric, the LR it trained at and the LR test's seconds (auto only)."""
    out = tmp / f"{pair.name}-{optimizer}-{lr}-{seed}"
    overrides = [*pair.overrides, *OPTIMIZERS[optimizer], f"optim.lr={lr}", f"train.epochs={pair.epochs}",
                 f"seed={seed}", "train.progress=none", f"out={out}"]
    timer = _LRTestTimer()
    with timer:
        run = gradwise.train(None, overrides)
    return {"metric": float(run.summary.get("test", {}).get(pair.metric, math.nan)), "lr": float(run.config.optim.lr),
            "seconds": timer.seconds}


class _LRTestTimer:
    """Times `gradwise.api.find_lr` (the LR range test `optim.lr: auto` runs) while in the `with` block.

    Wrapping the API function rather than reading a field the result carries measures the old and the new finder
    alike, so the before/after tables are comparable.
    """

    def __init__(self) -> None:
        self.seconds = math.nan

    def __enter__(self) -> _LRTestTimer:
        self._original = api.find_lr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.seconds = (0.0 if math.isnan(self.seconds) else self.seconds) + time.perf_counter() - t0

        api.find_lr = timed
        return self

    def __exit__(self, *exc: object) -> None:
        api.find_lr = self._original


def table(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    head = (f"{'pair':<18} {'optim':<6} {'default lr':>10} {'metric':>8} {'auto lr':>9} {'metric':>8} "
            f"{'diff':>7} {'lr test s':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['pair']:<18} {r['optim']:<6} {r['default_lr']:>10.3g} {r['default']:>8.2f} {r['auto_lr']:>9.3g} "
              f"{r['auto']:>8.2f} {r['auto'] - r['default']:>+7.2f} {r['seconds']:>9.2f}")
    diffs = [r["auto"] - r["default"] for r in rows]
    if diffs:
        print(f"worst diff {min(diffs):+.2f} points, mean {statistics.mean(diffs):+.2f}; "
              f"{sum(d >= -0.5 for d in diffs)}/{len(diffs)} within 0.5 points of the default or better")


def bench(selected: list[Pair], optimizers: list[str], seeds: list[int], tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for pair in selected:
        for opt in optimizers:
            default = [train_once(pair, opt, f"{DEFAULT_LR:g}", s, tmp) for s in seeds]
            auto = [train_once(pair, opt, "auto", s, tmp) for s in seeds]
            rows.append({
                "pair": pair.name, "optim": opt, "default_lr": DEFAULT_LR,
                # points: accuracy or R² x 100, so "0.5 points" reads the same for both
                "default": 100 * statistics.mean(r["metric"] for r in default),
                "auto": 100 * statistics.mean(r["metric"] for r in auto),
                "auto_lr": math.exp(statistics.mean(math.log(r["lr"]) for r in auto)),
                "seconds": statistics.mean(r["seconds"] for r in auto),
            })
            r = rows[-1]
            print(f"  {pair.name} {opt}: default {r['default']:.2f}, auto {r['auto']:.2f} at lr {r['auto_lr']:.3g}",
                  flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, AdamW and SGD, no Fashion-MNIST")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--held-out", action="store_true", help="run the pairs not used to design the rule instead")
    ap.add_argument("--only", nargs="+", default=None, help="pair names to run (default: all)")
    ap.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and the numbers do not depend on the machine
    np.seterr(all="ignore")
    seeds = args.seeds[:1] if args.quick else args.seeds

    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        t0 = time.perf_counter()
        if args.held_out:
            held = [p for p in pairs(None, True) if args.only is None or p.name in args.only]
            table(bench(held, args.optimizers, seeds, tmp),
                  f"held-out pairs (not used to design the rule), seeds {seeds} (metric: test accuracy, in points)")
        else:
            fashion = None if args.quick else fashion_subset(tmp / "fashion")
            designed = [p for p in pairs(fashion, False) if args.only is None or p.name in args.only]
            table(bench(designed, args.optimizers, seeds, tmp),
                  f"designed-on pairs, seeds {seeds} (metric: test accuracy or R², in points)")
        print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
