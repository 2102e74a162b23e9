"""Weight averaging figures for the README: the test metric of a plain run against the same run with train.ema and
with train.swa, over a few seeds (same data split, model, schedule and epochs; only the averaging differs).

    python bench/averaging.py [--dataset mnist1d] [--model mlp] [--epochs 30] [--seeds 0 1 2] [--ema 0.99]
                              [--swa-start 0.75] [--swa-lr ...] [--early-stopping] [--out runs/bench-averaging]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import gradwise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ema", type=float, default=0.99, help="train.ema.decay")
    parser.add_argument("--swa-start", type=float, default=0.75)
    parser.add_argument("--swa-lr", type=float, default=None, help="train.swa.lr (default: hold the LR reached)")
    parser.add_argument("--metric", default="test_accuracy")
    parser.add_argument("--early-stopping", action="store_true", help="keep early stopping on (it restores the best "
                        "epoch, and may stop a run before SWA starts); off by default: each run ends with its last "
                        "epoch's weights, the classic comparison")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for every run, e.g. optim.lr=3e-3")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-averaging"))
    args = parser.parse_args()

    swa = [f"train.swa.start={args.swa_start}"] + ([f"train.swa.lr={args.swa_lr}"] if args.swa_lr else [])
    settings = {"plain": [], f"ema {args.ema}": [f"train.ema.decay={args.ema}"],
                f"swa from {args.swa_start}": swa}
    base = [f"data.dataset={args.dataset}", f"model.name={args.model}", f"train.epochs={args.epochs}",
            "train.progress=none", "doctor.enabled=false", *args.extra]
    if not args.early_stopping:
        base.append("train.early_stopping.enabled=false")
    results: dict[str, list[float]] = {name: [] for name in settings}
    ends = "best.pt when early stopping restored it, else" if args.early_stopping else "early stopping off:"
    print(f"{args.dataset}, {args.model}, {args.epochs} epochs, {args.metric} of the weights each run ends with "
          f"({ends} the last epoch's)")
    print("| seed | " + " | ".join(settings) + " |")
    print("| --- |" + " --- |" * len(settings))
    for seed in args.seeds:
        row = []
        for name, over in settings.items():
            t0 = time.perf_counter()
            out = args.out / f"{name.split()[0]}-seed{seed}"
            run = gradwise.train(None, [*base, *over, f"seed={seed}", f"out={out}"], overwrite=True)
            value = run.summary["test"][args.metric]
            results[name].append(value)
            row.append(f"{value:.4f} ({time.perf_counter() - t0:.0f} s)")
        print(f"| {seed} | " + " | ".join(row) + " |", flush=True)
    means = {name: statistics.mean(v) for name, v in results.items()}
    print("| mean | " + " | ".join(f"{m:.4f}" for m in means.values()) + " |")
    plain = results["plain"]
    for name, values in results.items():
        if name != "plain":
            wins = sum(v >= p for v, p in zip(values, plain, strict=True))
            print(f"{name}: mean {means[name] - means['plain']:+.4f} vs plain; >= plain in {wins}/{len(plain)} seeds")


if __name__ == "__main__":
    main()
