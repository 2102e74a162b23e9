"""gradwise.fit against a hand-written PyTorch loop doing the same work, measured in the same process.

Same model (MLP 40-256-256-10), same data (MNIST-1D, standardized), same optimizer (AdamW, constant LR), same
batch size and number of steps, evaluation on the validation split (loss and accuracy) after every epoch.
gradwise runs with the doctor off and no progress output; it still keeps its own features that cost time by
design (checkpoint every epoch, early-stopping bookkeeping, metrics.jsonl), so the ratio is the honest price.

A third baseline adds what a careful hand-written loop does for the same safety: `torch.save` of the model and
optimizer state every epoch (not atomic, no fsync, no RNG state: less than gradwise's checkpoint).

gradwise picks torch's fused AdamW kernel where one exists; a hand-written loop gets the per-tensor loop unless
its author asks for `fused=True`. Both baselines are timed: against the fused one the ratio is gradwise's pure
overhead (same kernels, same work); against the default one it is what a user switching to gradwise sees.

The goal for issue 2 (<= 1.03x) is judged against the loop that also saves every epoch: the per-epoch checkpoint is
work the issue requires of gradwise, and on this benchmark's 32 ms epochs it alone costs ~3% (see the README).

    python bench/overhead.py [--epochs 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from mnist1d.data import get_dataset_args, make_dataset
from torch import nn

import gradwise


def data() -> tuple[torch.Tensor, ...]:
    d = make_dataset(get_dataset_args())
    x = torch.tensor(d["x"], dtype=torch.float32)
    mean, std = x.mean(0), x.std(0)
    x = (x - mean) / std
    y = torch.tensor(d["y"], dtype=torch.long)
    return x[:3600], y[:3600], x[3600:], y[3600:]


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def hand_loop(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, epochs: int, bs: int,
              fused: bool = False, checkpoint: str | None = None) -> float:
    net = model(0)
    # gradwise does not decay biases: the same two groups here, so both do exactly the same arithmetic
    params = list(net.parameters())
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": 0.01},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=3e-3, fused=fused or None)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=g)
        total = torch.zeros(())
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            total += loss.detach() * len(idx)
        net.eval()
        with torch.inference_mode():
            out = net(xv)
            val_loss = loss_fn(out, yv).item()
            val_acc = (out.argmax(1) == yv).float().mean().item()
        _ = (total / len(x)).item(), val_loss, val_acc
        if checkpoint:  # what a careful hand-written loop adds: model and optimizer saved every epoch
            torch.save({"model": net.state_dict(), "optimizer": opt.state_dict()}, checkpoint)
    return time.perf_counter() - t0


def gradwise_fit(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, epochs: int, bs: int,
                 out: str) -> float:
    net = model(0)
    t0 = time.perf_counter()
    gradwise.fit(net, (x, y), val=(xv, yv), loss="cross_entropy", optimizer="adamw", lr=3e-3, schedule="constant",
                 clip_grad=None, epochs=epochs, batch_size=bs, doctor=False, progress="none", out=out,
                 early_stopping=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    x, y, xv, yv = data()
    # warm up both paths once (imports, allocator, kernels) before timing
    hand_loop(x, y, xv, yv, 1, args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        gradwise_fit(x, y, xv, yv, 1, args.batch_size, f"{tmp}/warm")
        hand, fused, saving, ours = [], [], [], []
        for r in range(args.repeats):  # interleaved, so drift in machine load hits all alike
            hand.append(hand_loop(x, y, xv, yv, args.epochs, args.batch_size))
            fused.append(hand_loop(x, y, xv, yv, args.epochs, args.batch_size, fused=True))
            saving.append(hand_loop(x, y, xv, yv, args.epochs, args.batch_size, fused=True,
                                    checkpoint=f"{tmp}/hand.pt"))
            ours.append(gradwise_fit(x, y, xv, yv, args.epochs, args.batch_size, f"{tmp}/r{r}"))
    h, f, c, o = (statistics.median(v) for v in (hand, fused, saving, ours))
    steps = args.epochs * -(-len(x) // args.batch_size)
    print(f"MLP on MNIST-1D, {args.epochs} epochs x {steps // args.epochs} steps, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"hand-written loop, torch default AdamW : {h:.3f} s  ({h / steps * 1e3:.3f} ms/step)")
    print(f"hand-written loop, fused AdamW         : {f:.3f} s  ({f / steps * 1e3:.3f} ms/step)")
    print(f"hand-written loop, fused + torch.save  : {c:.3f} s  ({c / steps * 1e3:.3f} ms/step)")
    print(f"gradwise.fit (fused AdamW by default)  : {o:.3f} s  ({o / steps * 1e3:.3f} ms/step)")
    print(f"overhead, same kernels: gradwise / hand fused   = {o / f:.3f}x")
    print(f"same kernels, both checkpointing every epoch    = {o / c:.3f}x  (gradwise: atomic, fsynced, every RNG "
          "state)")
    print(f"as a user sees it:      gradwise / hand default = {o / h:.3f}x")


if __name__ == "__main__":
    main()
