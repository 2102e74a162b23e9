"""Evaluation memory: the Fashion-MNIST CNN (examples/fashion_mnist_cnn.yaml) evaluated on its validation and test
splits in batches of the old size (an 8 MiB input budget: 2,674 images of 28x28) against the batches gradwise's
loaders use now (the training batch), each in a fresh process.

Peak memory is the process's RSS high-water mark during evaluation only: it is reset (Linux's
/proc/self/clear_refs) once the data and the model are in memory, and the figure is the peak above the RSS at
that point. The model is untrained (evaluation memory does not depend on the weights).

    OMP_NUM_THREADS=1 python bench/eval_memory.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "fashion_mnist_cnn.yaml"
OLD_BUDGET = 8 << 20  # bytes of input per evaluation batch, the rule before


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(key)


def child(rule: str) -> None:
    import contextlib

    import torch

    from gradwise.config import load_config
    from gradwise.data import load_data, make_loaders_from_bundle
    from gradwise.data.loaders import TensorLoader
    from gradwise.models import build_model
    from gradwise.recipes import build_loss
    from gradwise.train.metrics import evaluate

    torch.set_num_threads(1)
    cfg = load_config(CONFIG)
    bundle = load_data(cfg.data, cfg.seed, loss=cfg.loss.name)
    model = build_model(cfg.model, bundle.input_shape, bundle.n_outputs, bundle.task)
    loss_fn = build_loss(cfg.loss, bundle.task, bundle.n_outputs, bundle.class_counts)
    _, val, test = make_loaders_from_bundle(bundle, cfg)  # what a run evaluates with
    if rule == "old":
        x = bundle.val[0]
        per_sample = x[:1].numel() * 4  # the rule budgeted float32 inputs (the splits are uint8 pixels now)
        size = max(2 * cfg.train.batch_size, min(len(x), 8192, OLD_BUDGET // per_sample))
        val, test = (TensorLoader(*split, size, shuffle=False, transform=getattr(bundle, "normalize", None))
                     for split in (bundle.val, bundle.test))
    Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
    base = _status("VmRSS")
    t0 = time.perf_counter()
    for loader in (val, test):
        evaluate(model, loader, loss_fn, torch.device("cpu"), bundle.task, contextlib.nullcontext)
    seconds = time.perf_counter() - t0
    print(json.dumps({"batch": val.batch_size, "peak_mb": _status("VmHWM") - base, "seconds": seconds}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    got: dict[str, list[dict]] = {"old": [], "new": []}
    for _ in range(args.repeats):
        for rule in got:
            proc = subprocess.run([sys.executable, __file__, "--child", rule], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            got[rule].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"Fashion-MNIST CNN, evaluation of val + test (16,000 images), 1 thread, {args.repeats} repeats (medians); "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| eval batches | batch | peak memory above the loaded state | eval seconds |")
    print("|---|---|---|---|")
    for rule, label in (("old", "8 MiB of input (before)"), ("new", "training batch (now)")):
        rows = got[rule]
        print(f"| {label} | {rows[0]['batch']} | {statistics.median(r['peak_mb'] for r in rows):.0f} MB | "
              f"{statistics.median(r['seconds'] for r in rows):.2f} s |")
    old, new = (statistics.median(r["peak_mb"] for r in got[k]) for k in ("old", "new"))
    print(f"peak memory old / new: {old / new:.2f}x")


if __name__ == "__main__":
    main()
