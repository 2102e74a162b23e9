"""Which CPU threading default should gradwise pick? The default run, timed quiet and next to a busy process.

Users train next to other work (an editor, a browser, a second run). PyTorch's CPU kernels run on an OpenMP pool
with one thread per physical core whose idle threads spin-wait for the next parallel region; when another process
holds a core, the pool's threads wait for each other on every op and an epoch can take 10-100x longer. Each
setting below is applied before torch loads, in a fresh process, to the run `gradwise train` makes by default
(cnn1d on MNIST-1D, doctor on, progress off):

    gradwise auto      train.threads: auto, gradwise's default: torch's threads less the cores others keep busy
    torch default      what torch does when nothing is set (OpenMP spins a while, then sleeps)
    active             OMP_WAIT_POLICY=ACTIVE (threads never sleep)
    passive            OMP_WAIT_POLICY=PASSIVE (idle threads sleep at once)
    spin 10k, spin 1k  GOMP_SPINCOUNT (libgomp spins this many times before sleeping; its default is 300k)
    1 thread           train.threads=1
    passive, 1 thread  both

"busy" runs one CPU-bound process (a Python busy loop) beside the run, as another job on the machine would.
The figure is the median seconds per epoch over the run's epochs (epoch 1 included: it is what a user waits for),
and the ratio is against "torch default" on a quiet machine, measured in the same run.

    python bench/threads.py [--epochs 3] [--repeats 2]
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

SETTINGS: dict[str, tuple[dict[str, str], str]] = {
    "gradwise auto": ({}, "auto"),
    "torch default": ({}, "all"),
    "active": ({"OMP_WAIT_POLICY": "ACTIVE"}, "all"),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "all"),
    "spin 10k": ({"GOMP_SPINCOUNT": "10000"}, "all"),
    "spin 1k": ({"GOMP_SPINCOUNT": "1000"}, "all"),
    "1 thread": ({}, "1"),
    "passive, 1 thread": ({"OMP_WAIT_POLICY": "PASSIVE"}, "1"),
}

CHILD = """
import json, sys, time
import gradwise, torch
t0 = time.perf_counter()
run = gradwise.train(None, ["train.progress=none", f"train.epochs={sys.argv[2]}", f"out={sys.argv[3]}",
                            f"train.threads={sys.argv[1]}"])
print(json.dumps({"epochs": [r["seconds"] for r in run.history], "wall": time.perf_counter() - t0,
                  "threads": run.summary.get("threads", torch.get_num_threads()),
                  "acc": run.summary["test"].get("test_accuracy")}))
"""


def run_setting(env_extra: dict[str, str], threads: str, epochs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", CHILD, threads, str(epochs), f"{tmp}/run"],
                              capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def busy_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="runs per cell; the median epoch over all is reported")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), help="a subset of the settings to time")
    args = ap.parse_args()
    print(f"{os.cpu_count()} logical CPUs; load before: {os.getloadavg()[0]:.2f}; {args.epochs} epochs x "
          f"{args.repeats} repeats per cell")
    rows: dict[tuple[str, str], float] = {}
    for load in ("quiet", "busy"):
        for name in args.settings:
            env_extra, threads = SETTINGS[name]
            epochs: list[float] = []
            hog = busy_process() if load == "busy" else None
            try:
                if hog is not None:
                    time.sleep(0.5)
                for _ in range(args.repeats):
                    result = run_setting(env_extra, threads, args.epochs)
                    epochs += result["epochs"]
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            rows[(load, name)] = statistics.median(epochs)
            print(f"  {load:<5} {name:<18} threads {result['threads']}  s/epoch {rows[(load, name)]:.3f}  "
                  f"(each: {', '.join(f'{e:.2f}' for e in epochs)})", flush=True)
    base = rows.get(("quiet", "torch default"))
    print("\n| setting | quiet s/epoch | busy s/epoch | quiet vs torch default | busy vs torch default quiet |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.settings:
        q, b = rows[("quiet", name)], rows[("busy", name)]
        ratio = (lambda v: f"{v / base:.2f}x") if base else (lambda v: "-")
        print(f"| {name} | {q:.3f} | {b:.3f} | {ratio(q)} | {ratio(b)} |")


if __name__ == "__main__":
    main()
