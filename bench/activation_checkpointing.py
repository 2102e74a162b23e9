"""Activation checkpointing: peak memory and step time of training steps with and without
`train.activation_checkpointing`, on deep built-in models. Each setting runs in its own subprocess, so one setting's
allocations cannot lower or raise the other's peak.

Memory: on CUDA, torch.cuda.max_memory_allocated over the training steps less what was allocated before them (the
model, optimizer and batch); on CPU, the growth of the process's peak resident set size (getrusage ru_maxrss) over
the training steps. Time: the median step (forward, backward, AdamW step) after one warm-up step.

    python bench/activation_checkpointing.py [--models transformer resnet mlp] [--batch N] [--steps 5]
                                             [--device auto] [--threads 1] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

# deep enough, and batches large enough, that activations rather than weights decide the peak:
# name -> (model fields, sample shape, batch)
MODELS: dict[str, tuple[dict[str, Any], tuple[int, ...], int]] = {
    "transformer": ({"hidden_size": 128, "heads": 4, "num_layers": 24, "options": {"patch_size": 8}}, (1024,), 64),
    "resnet": ({"channels": [32, 64, 128], "num_layers": 4}, (3, 32, 32), 128),
    "mlp": ({"widths": [512] * 24, "norm": "batch", "dropout": 0.1}, (256,), 2048),
}


def child(args: argparse.Namespace) -> None:
    import torch

    from gradwise.config import ModelConfig
    from gradwise.models import build_model
    from gradwise.models.checkpointing import enable_activation_checkpointing

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    fields, shape, batch = MODELS[args.model]
    batch = args.batch or batch
    model = build_model(ModelConfig(name=args.model, **fields), shape, 10, "classification").to(device)
    if args.checkpointing:
        enable_activation_checkpointing(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    model.train()

    def step() -> float:
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()  # a sync: the step is done when it returns

    # AdamW's state is created in the first step: allocate it before the baseline, as in a running fit
    for p in model.parameters():
        optimizer.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                              "exp_avg_sq": torch.zeros_like(p)}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    times, losses = [], []
    for _ in range(args.steps + 1):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    print(json.dumps({"peak_mib": peak / 2**20, "step_s": statistics.median(times[1:]), "loss": losses[-1],
                      "device": str(device), "batch": batch, "parameters": sum(p.numel() for p in model.parameters())}))


def measure(args: argparse.Namespace, model: str, checkpointing: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--model", model, "--checkpointing", str(int(checkpointing)),
           "--steps", str(args.steps), "--device", args.device, "--threads", str(args.threads)]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{model} (checkpointing={checkpointing}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["transformer", "resnet", "mlp"], choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=None, help="default: each model's own (MODELS)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each process (a fair share on a "
                        "shared machine)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two settings this many times each")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="transformer", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"median of {args.steps} steps after a warm-up, {args.threads} CPU thread(s); each setting in its own "
          "process")
    print("| model | parameters | batch | device | peak MiB plain | peak MiB checkpointed | memory ratio "
          "| step ms plain | step ms checkpointed | time ratio | same loss |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model in args.models:
        plain, ckpt = [], []
        for _ in range(args.repeats):  # alternated, so a change in the machine's load hits both settings
            plain.append(measure(args, model, False))
            ckpt.append(measure(args, model, True))
        mem_p = statistics.median(r["peak_mib"] for r in plain)
        mem_c = statistics.median(r["peak_mib"] for r in ckpt)
        t_p = statistics.median(r["step_s"] for r in plain)
        t_c = statistics.median(r["step_s"] for r in ckpt)
        same = abs(plain[0]["loss"] - ckpt[0]["loss"]) <= 1e-5 * max(1.0, abs(plain[0]["loss"]))
        print(f"| {model} | {plain[0]['parameters']:,} | {plain[0]['batch']} | {plain[0]['device']} | {mem_p:.0f} "
              f"| {mem_c:.0f} | {mem_c / mem_p:.2f} | {t_p * 1e3:.0f} | {t_c * 1e3:.0f} | {t_c / t_p:.2f} | {same} |",
              flush=True)


if __name__ == "__main__":
    main()
