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

Trackers (issue 13): the same gradwise.fit with `track: [tensorboard]` is timed in the same loop, interleaved with
the run without it (its one-off import is done in the warm-up, as the other imports are; the import alone is timed
and printed apart). The classification metrics each evaluation now computes (macro precision/recall/F1, balanced
accuracy) are timed on the validation split's outputs against the accuracy alone.

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
                 out: str, track: list[str] | None = None) -> float:
    net = model(0)
    t0 = time.perf_counter()
    gradwise.fit(net, (x, y), val=(xv, yv), loss="cross_entropy", optimizer="adamw", lr=3e-3, schedule="constant",
                 clip_grad=None, epochs=epochs, batch_size=bs, doctor=False, progress="none", out=out,
                 early_stopping=False, config={"track": track} if track else None)
    return time.perf_counter() - t0


def metrics_cost(xv: torch.Tensor, yv: torch.Tensor, repeats: int = 200) -> tuple[float, float]:
    """Seconds per call of the full classification metrics and of the accuracy alone, on MNIST-1D val outputs."""
    from torchmetrics.functional.classification import multiclass_accuracy

    from gradwise.train.metrics import task_metrics

    with torch.inference_mode():
        out = model(0)(xv)
    timings = []
    for fn in (lambda: task_metrics(out, yv, "classification"),
               lambda: multiclass_accuracy(out, yv, num_classes=10, average="micro").item()):
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        timings.append((time.perf_counter() - t0) / repeats)
    return timings[0], timings[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    x, y, xv, yv = data()
    # warm up both paths once (imports, allocator, kernels) before timing
    hand_loop(x, y, xv, yv, 1, args.batch_size)
    t0 = time.perf_counter()
    import torch.utils.tensorboard  # noqa: F401  (the tracker's one-off import, timed apart)
    tb_import = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        gradwise_fit(x, y, xv, yv, 1, args.batch_size, f"{tmp}/warm")
        gradwise_fit(x, y, xv, yv, 1, args.batch_size, f"{tmp}/warm-tb", track=["tensorboard"])
        hand, fused, saving, ours, ours_tb = [], [], [], [], []
        for r in range(args.repeats):  # interleaved, so drift in machine load hits all alike
            hand.append(hand_loop(x, y, xv, yv, args.epochs, args.batch_size))
            fused.append(hand_loop(x, y, xv, yv, args.epochs, args.batch_size, fused=True))
            saving.append(hand_loop(x, y, xv, yv, args.epochs, args.batch_size, fused=True,
                                    checkpoint=f"{tmp}/hand.pt"))
            ours.append(gradwise_fit(x, y, xv, yv, args.epochs, args.batch_size, f"{tmp}/r{r}"))
            ours_tb.append(gradwise_fit(x, y, xv, yv, args.epochs, args.batch_size, f"{tmp}/tb{r}",
                                        track=["tensorboard"]))
    full, accuracy = metrics_cost(xv, yv)
    h, f, c, o, t = (statistics.median(v) for v in (hand, fused, saving, ours, ours_tb))
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
    print(f"gradwise.fit, track: [tensorboard]     : {t:.3f} s  ({t / steps * 1e3:.3f} ms/step; loss and LR every "
          f"{gradwise.config.TrainConfig.model_fields['log_every'].default} steps)")
    print(f"TensorBoard on / off (same invocation)  = {t / o:.3f}x  (plus its one-off import: {tb_import:.2f} s)")
    print(f"eval metrics on {len(yv)} val rows: accuracy + precision/recall/F1/balanced accuracy {full * 1e3:.3f} ms, "
          f"accuracy alone {accuracy * 1e3:.3f} ms (+{(full - accuracy) * 1e3:.3f} ms per evaluation)")


if __name__ == "__main__":
    main()
