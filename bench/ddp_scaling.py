"""Data-parallel scaling: 1 process against 2 (DDP), the same global batch, the same run otherwise.

CPU (always): `gradwise train` with one torch thread, against `gradwise train --nproc 2` (Gloo, one thread per
process: torchrun sets OMP_NUM_THREADS=1), on digits with an MLP wide enough that compute dominates (3 hidden
layers of 1024: 2.2M parameters, ~0.8 GFLOP per step of 64 rows), global batch 64 (2 x 32 in DDP). Interleaved
repeats; the medians of

* steps per second over the epochs (metrics.jsonl `seconds`: the steps and the validation pass; start-up, the
  process launch and imports are not in it, and are printed apart as wall time),
* time to accuracy: the summed epoch seconds until val_accuracy first reaches --target,

and the scaling efficiency, (steps/s with 2 processes) / (2 x steps/s with 1): 1.0 is perfect scaling (twice the
rows per second); the gradient all-reduce (8.8 MB per step) and the step's agreement all-reduces take the rest.

GPU (when CUDA devices are there): the same on 1 GPU against min(2, GPUs) GPUs with NCCL, bf16 autocast, fused
AdamW (gradwise's defaults on a GPU), find_unused_parameters off and DDP's default 25 MB buckets (gradwise's DDP
settings), a larger model and batch so that a step is not all launch overhead. With one GPU only the single-GPU
figure is printed (two processes on one GPU measure nothing useful). Marked `gpu` in tests: not run on CPU CI.

    python bench/ddp_scaling.py                       # CPU, 3 interleaved repeats
    python bench/ddp_scaling.py --repeats 5 --epochs 8 --target 0.95
    python bench/ddp_scaling.py --gpu                 # the GPU comparison too (needs CUDA)

Run it on a quiet machine: two processes of one thread need two free cores, and a loaded machine shows the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CPU_MODEL = ["data.dataset=digits", "model.name=mlp", "model.widths=[1024,1024,1024]", "train.progress=none",
             "train.early_stopping.enabled=false", "doctor.enabled=false", "optim.lr=1e-3"]
GPU_MODEL = ["data.dataset=mnist1d", "model.name=mlp", "model.widths=[4096,4096,4096]", "train.progress=none",
             "train.early_stopping.enabled=false", "doctor.enabled=false", "optim.lr=1e-3", "train.device=cuda",
             "train.precision=bf16"]


def one_run(overrides: list[str], nproc: int, out: Path, threads_env: dict[str, str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "gradwise", "train", *overrides, "--out", str(out)]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **threads_env})
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(r["seconds"] for r in rows)
    return {"steps_per_s": rows[-1]["step"] / seconds, "epoch_s": seconds / len(rows), "wall_s": wall,
            "rows": rows, "val_accuracy": rows[-1].get("val_accuracy", float("nan"))}


def time_to(rows: list[dict], target: float) -> float | None:
    total = 0.0
    for r in rows:
        total += r["seconds"]
        if r.get("val_accuracy", 0.0) >= target:
            return total
    return None


def compare(label: str, base: list[str], nproc: int, batch: int, args: argparse.Namespace,
            threads_env: dict[str, str]) -> None:
    """`repeats` interleaved pairs: 1 process with `batch` rows against `nproc` with batch // nproc each."""
    results: dict[int, list[dict]] = {1: [], nproc: []}
    with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as tmp:
        for rep in range(args.repeats):
            for n in (1, nproc):
                over = [*base, f"train.epochs={args.epochs}", f"train.batch_size={batch // n}"]
                results[n].append(one_run(over, n, Path(tmp) / f"{label}-{n}-{rep}", threads_env))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("steps_per_s", "epoch_s", "wall_s", "val_accuracy")}
           for n, rs in results.items()}
    tta = {n: [time_to(r["rows"], args.target) for r in rs] for n, rs in results.items()}
    print(f"\n{label}: global batch {batch}, {args.epochs} epochs, median of {args.repeats}")
    print(f"{'processes':>9} {'steps/s':>9} {'s/epoch':>8} {'wall s':>7} {'final val acc':>13} "
          f"{'s to val acc >= ' + str(args.target):>22}")
    for n in (1, nproc):
        reached = [t for t in tta[n] if t is not None]
        shown = f"{statistics.median(reached):.2f}" if len(reached) == len(tta[n]) else f"not reached ({tta[n]})"
        print(f"{n:>9} {med[n]['steps_per_s']:>9.2f} {med[n]['epoch_s']:>8.3f} {med[n]['wall_s']:>7.1f} "
              f"{med[n]['val_accuracy']:>13.4f} {shown:>22}")
    speedup = med[nproc]["steps_per_s"] / med[1]["steps_per_s"]
    each = [b["steps_per_s"] / a["steps_per_s"] for a, b in zip(results[1], results[nproc], strict=True)]
    print(f"speed-up {speedup:.2f}x on {nproc} processes; scaling efficiency {speedup / nproc:.2f} (per-repeat "
          f"speed-ups: {', '.join(f'{v:.2f}' for v in each)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.95, help="val_accuracy for time-to-accuracy")
    parser.add_argument("--gpu", action="store_true", help="also compare GPUs (NCCL)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    compare("CPU (Gloo), one thread per process", CPU_MODEL, 2, 64, args, {"OMP_NUM_THREADS": "1"})
    if args.gpu:
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise SystemExit("--gpu: no CUDA device here")
        print(f"GPU: {torch.cuda.get_device_name(0)} x {count}")
        if count >= 2:
            compare("GPU (NCCL), bf16", GPU_MODEL, 2, 1024, args, {})
        else:
            with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as tmp:
                r = one_run([*GPU_MODEL, f"train.epochs={args.epochs}", "train.batch_size=1024"], 1,
                            Path(tmp) / "gpu1", {})
            print(f"1 GPU: {r['steps_per_s']:.1f} steps/s (one GPU only: no DDP comparison)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
