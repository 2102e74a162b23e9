"""Data-parallel scaling: 1 process against 2 (DDP), the same global batch, against a hand-written torch loop.

CPU (always): `gradwise train` with one torch thread, against `gradwise train --nproc 2` (Gloo, one thread per
process: torchrun sets OMP_NUM_THREADS=1), on digits with an MLP wide enough that compute dominates (3 hidden
layers of 1024: 2.2M parameters, ~0.8 GFLOP per step of 64 rows), global batch --global-batch (default 64: 2 x 32
in DDP). The baseline: the same run in bench/ddp_raw_loop.py, a plain torch DDP loop (the same model, data,
AdamW and LR, per-rank shards of each global batch) launched with `python -m torch.distributed.run --standalone
--nproc-per-node N`, as `--nproc N` launches gradwise. The four (loop, processes) runs are interleaved in each
repeat (the order of the loops alternating), and the script prints the medians of

* steps per second over the epochs (metrics.jsonl `seconds`: the steps and the validation pass; start-up, the
  process launch and imports are not in it, and are printed apart as wall time),
* time to accuracy: the summed epoch seconds until val_accuracy first reaches --target,

then gradwise / hand-written steps/s on 1 and on 2 processes (1.0: gradwise adds nothing to the step), and each
loop's scaling efficiency, (steps/s with 2 processes) / (2 x steps/s with 1): 1.0 is perfect scaling (twice the
rows per second); the gradient all-reduce (8.8 MB per step) takes the rest, and gradwise's step also its
agreement all-reduces. Where the hand-written loop does not scale either, the limit is the machine's Gloo
all-reduce (or its cores), not gradwise.

GPU (--gpu, when CUDA devices are there): the same on 1 GPU against min(2, GPUs) GPUs with NCCL, bf16 autocast,
fused AdamW (gradwise's defaults on a GPU; the hand-written loop does the same), find_unused_parameters off and
DDP's default 25 MB buckets (gradwise's DDP settings), a larger model and batch (mnist1d, 3 x 4096, global batch
1024) so that a step is not all launch overhead. With one GPU only the single-GPU figures and their ratio are
printed (two processes on one GPU measure nothing useful). Marked `gpu` in tests: not run on CPU CI.

    python bench/ddp_scaling.py                       # CPU, 3 interleaved repeats, global batch 64
    python bench/ddp_scaling.py --repeats 5 --epochs 20 --global-batch 512
    python bench/ddp_scaling.py --gpu                 # the GPU comparison too (needs CUDA)

Run it on a quiet machine: two processes of one thread need two free cores, and a loaded machine shows the load
(the script prints the load average at the start and after each comparison).
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
GPU_BATCH = 1024
# The same runs in the hand-written loop (bench/ddp_raw_loop.py): model, data, optimizer and LR as above
RAW_LOOP = Path(__file__).with_name("ddp_raw_loop.py")
CPU_RAW = ["--dataset", "digits", "--widths", "1024", "1024", "1024", "--lr", "1e-3"]
GPU_RAW = ["--dataset", "mnist1d", "--widths", "4096", "4096", "4096", "--lr", "1e-3", "--device", "cuda"]


def launch(cmd: list[str], metrics: Path, threads_env: dict[str, str]) -> dict:
    """Run one training command; its metrics.jsonl-shaped rows give steps/s over the epochs (launch not in it)."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **threads_env})
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        # the first lines name the failing rank's error; torchrun's own summary is at the end
        raise SystemExit(f"run failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[:3000]}\n...\n"
                         f"{done.stderr[-1500:]}")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    seconds = sum(r["seconds"] for r in rows)
    return {"steps_per_s": rows[-1]["step"] / seconds, "epoch_s": seconds / len(rows), "wall_s": wall,
            "rows": rows, "val_accuracy": rows[-1].get("val_accuracy", float("nan"))}


def gradwise_run(overrides: list[str], nproc: int, batch: int, epochs: int, out: Path,
                 threads_env: dict[str, str]) -> dict:
    """`gradwise train` with `batch` rows a step over all processes (batch // nproc each)."""
    cmd = [sys.executable, "-m", "gradwise", "train", *overrides, f"train.epochs={epochs}",
           f"train.batch_size={batch // nproc}", "--out", str(out)]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    return launch(cmd, out / "metrics.jsonl", threads_env)


def raw_run(raw_args: list[str], nproc: int, batch: int, epochs: int, out: Path, threads_env: dict[str, str]) -> dict:
    """The hand-written loop under torchrun, as `gradwise train --nproc N` launches itself (1 process: no DDP)."""
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           str(RAW_LOOP), *raw_args, "--global-batch", str(batch), "--epochs", str(epochs),
           "--out", str(out / "metrics.jsonl")]
    return launch(cmd, out / "metrics.jsonl", threads_env)


def time_to(rows: list[dict], target: float) -> float | None:
    total = 0.0
    for r in rows:
        total += r["seconds"]
        # accuracies are float32 fractions (171/180 is logged as 0.94999999): 1e-6 of slack, or 0.95 is never reached
        if r.get("val_accuracy", 0.0) >= target - 1e-6:
            return total
    return None


def compare(label: str, gw_base: list[str], raw_base: list[str], counts: tuple[int, ...], batch: int,
            args: argparse.Namespace, threads_env: dict[str, str]) -> None:
    """`repeats` interleaved rounds of gradwise and the hand-written loop on each process count, `batch` rows a step.

    Within a round the two implementations alternate which goes first, so a change in the machine's load (it is
    shared) falls on both alike; the ratios are of figures measured side by side.
    """
    impls = {"gradwise": gradwise_run, "hand-written": raw_run}
    bases = {"gradwise": gw_base, "hand-written": raw_base}
    results: dict[tuple[str, int], list[dict]] = {(i, n): [] for i in impls for n in counts}
    with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as tmp:
        for rep in range(args.repeats):
            for n in counts:
                order = list(impls) if rep % 2 == 0 else list(impls)[::-1]
                for impl in order:
                    out = Path(tmp) / f"{impl}-{n}-{rep}"
                    results[impl, n].append(impls[impl](bases[impl], n, batch, args.epochs, out, threads_env))
    keys = ("steps_per_s", "epoch_s", "wall_s", "val_accuracy")
    med = {k: {f: statistics.median(r[f] for r in rs) for f in keys} for k, rs in results.items()}
    print(f"\n{label}: global batch {batch}, {args.epochs} epochs, median of {args.repeats}, "
          f"load average {os.getloadavg()[0]:.2f} after it")
    print(f"{'loop':>12} {'processes':>9} {'steps/s':>9} {'s/epoch':>8} {'wall s':>7} {'final val acc':>13} "
          f"{'s to val acc >= ' + str(args.target):>22}")
    for (impl, n), rs in results.items():
        tta = [time_to(r["rows"], args.target) for r in rs]
        reached = [t for t in tta if t is not None]
        shown = f"{statistics.median(reached):.2f}" if len(reached) == len(tta) else f"not reached ({tta})"
        m = med[impl, n]
        print(f"{impl:>12} {n:>9} {m['steps_per_s']:>9.2f} {m['epoch_s']:>8.3f} {m['wall_s']:>7.1f} "
              f"{m['val_accuracy']:>13.4f} {shown:>22}")

    def per_repeat(a: list[dict], b: list[dict]) -> str:
        return ", ".join(f"{y['steps_per_s'] / x['steps_per_s']:.2f}" for x, y in zip(a, b, strict=True))

    for n in counts:
        ratio = med["gradwise", n]["steps_per_s"] / med["hand-written", n]["steps_per_s"]
        print(f"gradwise / hand-written steps/s on {n} process(es): {ratio:.2f} "
              f"(per repeat: {per_repeat(results['hand-written', n], results['gradwise', n])})")
    if len(counts) > 1:
        n = counts[-1]
        for impl in impls:
            speedup = med[impl, n]["steps_per_s"] / med[impl, 1]["steps_per_s"]
            print(f"{impl}: speed-up {speedup:.2f}x on {n} processes; scaling efficiency {speedup / n:.2f} "
                  f"(per-repeat speed-ups: {per_repeat(results[impl, 1], results[impl, n])})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--global-batch", type=int, default=64,
                        help=f"rows per step over all processes, CPU comparison (the GPU one uses {GPU_BATCH})")
    parser.add_argument("--target", type=float, default=0.95, help="val_accuracy for time-to-accuracy")
    parser.add_argument("--gpu", action="store_true", help="also compare GPUs (NCCL)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    compare("CPU (Gloo), one thread per process", CPU_MODEL, CPU_RAW, (1, 2), args.global_batch, args,
            {"OMP_NUM_THREADS": "1"})
    if args.gpu:
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise SystemExit("--gpu: no CUDA device here")
        print(f"GPU: {torch.cuda.get_device_name(0)} x {count}")
        # two processes on one GPU measure nothing useful: with one GPU only the 1-GPU figures (and the ratio)
        counts = (1, 2) if count >= 2 else (1,)
        compare("GPU (NCCL), bf16", GPU_MODEL, GPU_RAW, counts, GPU_BATCH, args, {})
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
