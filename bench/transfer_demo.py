"""Transfer learning on real data: pretrain on Fashion-MNIST classes 0-4, fine-tune on classes 5-9 with 50 images
per class, against the same model trained from scratch on the same 250 images (same epochs, same seed).

Runs the three example configs through the public API (`gradwise.train`):

1. examples/transfer_pretrain.yaml  - classes 0-4, all ~27,000 training images, 3 epochs (once);
2. examples/transfer_scratch.yaml   - classes 5-9, 250 training images, 15 epochs, random init (per seed);
3. examples/transfer_finetune.yaml  - the same, starting from step 1's weights: frozen conv blocks for 3 epochs,
   then everything with discriminative LRs (per seed).

Both tasks have 5 classes, so a partial load by name and shape would also copy step 1's head; the fine-tune
config sets `model.pretrained_exclude: [head]` so the new head starts fresh (--keep-head loads it too).
Accuracies are on the 5,000 held-out test images of classes 5-9. Needs Debian's dataset-fashion-mnist.

    python bench/transfer_demo.py [--seeds 0 1 2] [--out runs/transfer-demo] [--keep-head]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import gradwise

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def timed(config: Path, overrides: list[str]) -> tuple[gradwise.Run, float]:
    start = time.perf_counter()
    run = gradwise.train(config, overrides)
    return run, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning/scratch seeds")
    ap.add_argument("--out", type=Path, default=Path("runs/transfer-demo"), help="folder for the run directories")
    ap.add_argument("--keep-head", action="store_true", help="also load the pretrained head (same shape)")
    ap.add_argument("--progress", default="none", choices=["auto", "bar", "plain", "none"])
    args = ap.parse_args(argv)
    common = [f"train.progress={args.progress}"]

    pre, pre_s = timed(EXAMPLES / "transfer_pretrain.yaml", [*common, f"out={args.out / 'pretrain'}"])
    print(f"pretrain (classes 0-4): test accuracy {pre.summary['test']['test_accuracy']:.4f}  {pre_s:.1f} s",
          flush=True)
    checkpoint = pre.dir / "checkpoints" / "best.pt"
    head = ["model.pretrained_exclude=[]"] if args.keep_head else []

    rows = []
    for seed in args.seeds:
        run_common = [*common, f"seed={seed}"]
        scratch, scratch_s = timed(EXAMPLES / "transfer_scratch.yaml",
                                   [*run_common, f"out={args.out / f'scratch-seed{seed}'}"])
        tuned, tuned_s = timed(EXAMPLES / "transfer_finetune.yaml",
                               [*run_common, f"model.pretrained={checkpoint}", *head,
                                f"out={args.out / f'finetune-seed{seed}'}"])
        a, b = scratch.summary["test"]["test_accuracy"], tuned.summary["test"]["test_accuracy"]
        rows.append((seed, a, b))
        print(f"seed {seed}: scratch {a:.4f} ({scratch_s:.1f} s)  fine-tuned {b:.4f} ({tuned_s:.1f} s)  "
              f"gain {100 * (b - a):+.2f} points", flush=True)
    gains = [b - a for _, a, b in rows]
    print(f"mean over {len(rows)} seed(s): scratch {statistics.mean(a for _, a, _ in rows):.4f}  fine-tuned "
          f"{statistics.mean(b for _, _, b in rows):.4f}  gain {100 * statistics.mean(gains):+.2f} points "
          f"(min {100 * min(gains):+.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
