"""What the doctor costs: the same gradwise.fit run with the doctor on and off, measured in the same process.

MLP (40-256-256-10) or 1-D CNN on MNIST-1D (standardized), AdamW, warmup-cosine, batch 64, evaluation on the
validation split every epoch, no progress output. Runs are interleaved (off, on, off, on, ...) so drift in the
machine's load hits both alike; the ratio of the medians is printed (and of the fastest runs: interference only
adds time), for wall-clock time and for this process's CPU time (on a machine shared with other jobs the CPU time
is the stable measure: another job's load stretches the wall clock of whichever run it overlaps). Goal: <= 1.05x.

    python bench/doctor_overhead.py [--model mlp|cnn] [--epochs 20] [--repeats 5] [--probe-every 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from doctor.cases import CNN1d
from mnist1d.data import get_dataset_args, make_dataset
from torch import nn

import gradwise


def data() -> tuple[torch.Tensor, ...]:
    d = make_dataset(get_dataset_args())
    x = torch.tensor(d["x"], dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(d["y"], dtype=torch.long)
    return x[:3600], y[:3600], x[3600:], y[3600:]


def model(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "cnn":
        return CNN1d(40, 10, seed=seed)
    return nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def one(kind: str, doctor: bool, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, epochs: int,
        bs: int, probe_every: int, out: str) -> tuple[float, float, list[str]]:
    net = model(kind)
    t0, c0 = time.perf_counter(), time.process_time()
    run = gradwise.fit(net, (x, y), val=(xv, yv), loss="cross_entropy", optimizer="adamw", lr=3e-3, epochs=epochs,
                       batch_size=bs, doctor=doctor, progress="none", out=out, early_stopping=False,
                       probe_every=probe_every)
    return time.perf_counter() - t0, time.process_time() - c0, [f.code for f in run.findings]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--probe-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time equals the work done)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y, xv, yv = data()
    off: list[float] = []
    on: list[float] = []
    cpu: dict[bool, list[float]] = {False: [], True: []}
    findings: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        one(args.model, True, x, y, xv, yv, 1, args.batch_size, args.probe_every, f"{tmp}/warm1")  # warm-up
        one(args.model, False, x, y, xv, yv, 1, args.batch_size, args.probe_every, f"{tmp}/warm0")
        for r in range(args.repeats):
            first_on = r % 2 == 1  # alternate which goes first, so neither always gets the warmer caches
            for doctor in (first_on, not first_on):
                sec, cs, codes = one(args.model, doctor, x, y, xv, yv, args.epochs, args.batch_size,
                                     args.probe_every, f"{tmp}/r{r}-{int(doctor)}")
                (on if doctor else off).append(sec)
                cpu[doctor].append(cs)
                if doctor:
                    findings = codes
    steps = args.epochs * -(-len(x) // args.batch_size)
    a, b = statistics.median(off), statistics.median(on)
    print(f"{args.model.upper()} on MNIST-1D, {args.epochs} epochs x {steps // args.epochs} steps, batch "
          f"{args.batch_size}, probe_every {args.probe_every}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats}")
    print(f"doctor off : {a:.3f} s  ({a / steps * 1e3:.3f} ms/step)  runs {[round(v, 3) for v in off]}")
    print(f"doctor on  : {b:.3f} s  ({b / steps * 1e3:.3f} ms/step)  runs {[round(v, 3) for v in on]}")
    ca, cb = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"CPU time   : off {ca:.3f} s, on {cb:.3f} s")
    # interference from other jobs only ever adds time: the fastest of the repeats is the least disturbed
    print(f"ratio on/off: wall {b / a:.3f}x (fastest runs {min(on) / min(off):.3f}x), CPU {cb / ca:.3f}x "
          f"(goal <= 1.05x); findings on this run: {findings or 'none'}")


if __name__ == "__main__":
    main()
