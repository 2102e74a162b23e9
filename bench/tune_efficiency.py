"""TPE with median pruning against random search without pruning, at equal trial counts, on MNIST-1D.

Both searches run `gradwise tune` (in this process, one worker) over the same space and the same number of trials;
each trial is an MLP trained for up to --epochs epochs with early stopping. Printed side by side: wall time, CPU
time of this process (steadier than wall time on a shared machine), epochs actually trained (pruning's saving), the
best validation accuracy, and the test accuracy of the best trial's run (how well the winner generalizes).

    python bench/tune_efficiency.py [--trials 30] [--epochs 20] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from rich.console import Console

from gradwise.tune.command import tune

SPACE = {
    # wide on purpose: a real first search does not know where the good learning rates are
    "optim.lr": {"low": 1.0e-5, "high": 1.0, "log": True},
    "optim.weight_decay": {"low": 1.0e-5, "high": 1.0e-1, "log": True},
    "model.dropout": {"low": 0.0, "high": 0.5, "step": 0.1},
    "model.activation": ["relu", "gelu", "tanh"],
    "model.widths": [[64], [256, 256], [512, 256]],
}


def config(epochs: int, trials: int, sampler: str, pruner: str, seed: int) -> dict:
    return {
        "name": f"bench-{sampler}-{pruner}", "seed": seed,
        "data": {"dataset": "mnist1d"},
        "model": {"name": "mlp", "norm": "batch"},
        "train": {"epochs": epochs, "batch_size": 128},
        "tune": {"metric": "val_accuracy", "trials": trials, "sampler": sampler, "pruner": pruner, "space": SPACE},
    }


def run(root: Path, epochs: int, trials: int, sampler: str, pruner: str, seed: int) -> dict:
    path = root / f"{sampler}-{pruner}-{seed}.yaml"
    path.write_text(yaml.safe_dump(config(epochs, trials, sampler, pruner, seed), sort_keys=False))
    out = root / f"{sampler}-{pruner}-{seed}"
    t0, c0 = time.perf_counter(), time.process_time()
    code = tune(path, None, None, None, None, False, out, [], console=Console(file=io.StringIO()))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert code == 0, f"{sampler}/{pruner} failed"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    study = optuna.load_study(study_name=f"bench-{sampler}-{pruner}", storage=storage)
    trials_ = study.get_trials(deepcopy=False)
    best = study.best_trial
    return {
        "wall": wall,
        "cpu": cpu,
        "epochs": sum(int(t.user_attrs.get("epochs", 0)) for t in trials_),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials_),
        "best_val": float(best.value),
        "best_test": float(best.user_attrs.get("test_accuracy", float("nan"))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()

    arms = [("tpe", "median"), ("random", "none")]
    results: dict[tuple[str, str], list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: imports, the MNIST-1D cache and matplotlib's font cache are paid here, not by the first arm
        run(Path(tmp), 1, 1, "random", "none", 12345)
        for seed in args.seeds:
            for sampler, pruner in arms:
                r = run(Path(tmp), args.epochs, args.trials, sampler, pruner, seed)
                results[(sampler, pruner)].append(r)
                print(f"seed {seed}  {sampler:>6} + {pruner:<6}  {r['wall']:6.1f} s wall  {r['cpu']:6.1f} s cpu  "
                      f"{r['epochs']:4d} epochs  "
                      f"{r['pruned']:2d} pruned  best val_accuracy {r['best_val']:.4f}  "
                      f"(its test_accuracy {r['best_test']:.4f})", flush=True)

    def mean(arm: tuple[str, str], key: str) -> float:
        return statistics.fmean(r[key] for r in results[arm])

    print(f"\nMNIST-1D MLP, {args.trials} trials each, up to {args.epochs} epochs per trial, "
          f"seeds {args.seeds} (means)")
    print(f"{'search':<24}{'wall s':>9}{'cpu s':>9}{'epochs':>9}{'pruned':>8}{'best val_acc':>14}{'its test_acc':>14}")
    for arm in arms:
        label = f"{arm[0]} + {arm[1]} pruning" if arm[1] != "none" else f"{arm[0]}, no pruning"
        print(f"{label:<24}{mean(arm, 'wall'):>9.1f}{mean(arm, 'cpu'):>9.1f}{mean(arm, 'epochs'):>9.0f}"
              f"{mean(arm, 'pruned'):>8.1f}"
              f"{mean(arm, 'best_val'):>14.4f}{mean(arm, 'best_test'):>14.4f}")
    print(f"TPE + median pruning vs random search: {mean(arms[1], 'wall') / mean(arms[0], 'wall'):.2f}x faster (wall), "
          f"{mean(arms[1], 'cpu') / mean(arms[0], 'cpu'):.2f}x (cpu), "
          f"{mean(arms[0], 'epochs') / mean(arms[1], 'epochs'):.0%} of the epochs, best val_accuracy "
          f"{mean(arms[0], 'best_val') - mean(arms[1], 'best_val'):+.4f}")


if __name__ == "__main__":
    main()
