"""TPE with median pruning against random search without pruning, at equal trial counts, on MNIST-1D.

Both searches run `gradwise tune` (in this process, one worker) over the same space and the same number of trials;
each trial is an MLP trained for up to --epochs epochs with early stopping. Printed side by side: wall time, CPU
time of this process (steadier than wall time on a shared machine), epochs actually trained (pruning's saving), the
best validation accuracy, and the test accuracy of the best trial's run (how well the winner generalizes).

    python bench/tune_efficiency.py [--trials 30] [--epochs 20] [--seeds 0 1]

`--vs-optuna` measures gradwise's fixed costs instead: the same random search (same parameters, no pruning) run
by `gradwise tune` and by bare Optuna whose objective trains the same model (gradwise's mlp builder) by hand on
tensors prepared once (AdamW, the same batch size, validation accuracy each epoch), each in a fresh process.
Printed: seconds per trial (median of Optuna's trial durations) and the whole study's wall time.

    OMP_NUM_THREADS=1 python bench/tune_efficiency.py --vs-optuna [--trials 8] [--epochs 2] [--repeats 3]

`--same-recipe` gives the hand loop gradwise's default recipe too (gradient clipping at norm 1 and a warmup-cosine
LR schedule stepped every batch, from torch itself): without it the hand loop trains with a constant LR and no
clipping, so the ratio also counts that training work, not only gradwise's fixed costs.

`--bare-journal` keeps the bare study in an Optuna journal file (every write fsynced), as `gradwise tune` keeps its
studies (resumable, shared by workers); by default it is in memory.

`--baseline-src DIR` adds a third side, gradwise from another source tree (e.g. `git archive` of an older commit's
src/ unpacked to DIR), interleaved with the others: before/after figures from one run on one machine.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def config(epochs: int, trials: int, sampler: str, pruner: str, seed: int, test: bool = True) -> dict:
    return {
        "name": f"bench-{sampler}-{pruner}", "seed": seed,
        "data": {"dataset": "mnist1d"},
        "model": {"name": "mlp", "norm": "batch"},
        "train": {"epochs": epochs, "batch_size": 128},
        # test: each trial's test accuracy (the winner's is printed); the fixed-cost comparison leaves it out, as
        # `gradwise tune` does by default
        "tune": {"metric": "val_accuracy", "trials": trials, "sampler": sampler, "pruner": pruner, "space": SPACE,
                 **({"test": True} if test else {})},  # (left out: --baseline-src trees older than tune.test)
    }


def run(root: Path, epochs: int, trials: int, sampler: str, pruner: str, seed: int, test: bool = True) -> dict:
    path = root / f"{sampler}-{pruner}-{seed}.yaml"
    path.write_text(yaml.safe_dump(config(epochs, trials, sampler, pruner, seed, test), sort_keys=False))
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


# ------------------------------------------------------------------------------------ gradwise vs bare Optuna


CPU_PER_TRIAL: list[float] = []  # process CPU seconds of each objective call (steadier than wall time when loaded)


def cpu_timed(fn: Any) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        c0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            CPU_PER_TRIAL.append(time.process_time() - c0)
    return timed


def trial_seconds(study: optuna.Study) -> list[float]:
    return [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.get_trials(deepcopy=False)
            if t.datetime_complete is not None and t.datetime_start is not None]


def gradwise_study(root: Path, epochs: int, trials: int) -> dict:
    """`gradwise tune`, random search without pruning (every trial trains every epoch, as the hand one does)."""
    from gradwise.tune import objective

    objective.Objective.__call__ = cpu_timed(objective.Objective.__call__)  # type: ignore[method-assign]
    t0, c0 = time.perf_counter(), time.process_time()
    summary = run(root, epochs, trials, "random", "none", 0, test=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(root / "random-none-0" / "study.journal")))
    study = optuna.load_study(study_name="bench-random-none", storage=storage)
    return {"wall": wall, "cpu": cpu, "trials": trial_seconds(study), "trials_cpu": CPU_PER_TRIAL,
            "best": summary["best_val"]}


def optuna_study(epochs: int, trials: int, same_recipe: bool = False, journal: Path | None = None) -> dict:
    """Bare Optuna: the data prepared once (as gradwise prepares it), each trial builds and trains the model by hand."""
    import torch
    from torch import nn

    from gradwise.config import load_config
    from gradwise.data import load_data
    from gradwise.models.architectures import mlp

    t0, c0 = time.perf_counter(), time.process_time()
    cfg = load_config(None, ["data.dataset=mnist1d"])
    bundle = load_data(cfg.data, 0)
    (x, y), (xv, yv) = bundle.train, bundle.val  # type: ignore[misc]
    space = SPACE

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("optim.lr", space["optim.lr"]["low"], space["optim.lr"]["high"], log=True)
        wd = trial.suggest_float("optim.weight_decay", space["optim.weight_decay"]["low"],
                                 space["optim.weight_decay"]["high"], log=True)
        dropout = trial.suggest_float("model.dropout", 0.0, 0.5, step=0.1)
        activation = trial.suggest_categorical("model.activation", space["model.activation"])
        widths = json.loads(trial.suggest_categorical("model.widths", [json.dumps(w) for w in space["model.widths"]]))
        torch.manual_seed(0)
        net = mlp(tuple(x.shape[1:]), 10, widths=widths, activation=activation, norm="batch", dropout=dropout)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)
        loss_fn = nn.CrossEntropyLoss()
        steps = epochs * -(-len(x) // 128)
        warm = max(1, int(0.05 * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(
            math.pi * min(max(s - warm, 0) / max(steps - warm, 1), 1.0))))) if same_recipe else None
        g = torch.Generator().manual_seed(0)
        best = 0.0
        for _ in range(epochs):
            net.train()
            order = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), 128):
                idx = order[i:i + 128]
                loss = loss_fn(net(x[idx]), y[idx])
                loss.backward()
                if same_recipe:
                    nn.utils.clip_grad_norm_(net.parameters(), 1.0, foreach=True)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if schedule is not None:
                    schedule.step()
            net.eval()
            with torch.inference_mode():
                best = max(best, (net(xv).argmax(1) == yv).float().mean().item())
        return best

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # --bare-journal: the study in a journal file as gradwise keeps it (resumable; every write fsynced)
    storage = None if journal is None else optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                storage=storage)
    study.optimize(cpu_timed(objective), n_trials=trials)
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "trials": trial_seconds(study),
            "trials_cpu": CPU_PER_TRIAL, "best": study.best_value}


def vs_optuna_child(side: str, epochs: int, trials: int, same_recipe: bool = False, journal: bool = False) -> None:
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        got = gradwise_study(Path(tmp), epochs, trials) if side == "gradwise" else \
            optuna_study(epochs, trials, same_recipe, Path(tmp) / "bare.journal" if journal else None)
    print(json.dumps(got))


def vs_optuna(args: argparse.Namespace) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    got: dict[str, list[dict]] = {"optuna": [], "gradwise": []}
    if args.baseline_src:
        got["baseline"] = []
    for _ in range(args.repeats):  # interleaved: a change of load hits both sides alike
        for side in got:
            child_env = env
            if side == "baseline":  # the same child, importing gradwise from the other tree
                child_env = {**env, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
            proc = subprocess.run([sys.executable, __file__, "--child", "gradwise" if side == "baseline" else side,
                                   "--trials", str(args.trials), "--epochs", str(args.epochs),
                                   *(["--same-recipe"] if args.same_recipe else []),
                                   *(["--bare-journal"] if args.bare_journal else [])],
                                  capture_output=True, text=True, env=child_env)
            if proc.returncode != 0:
                raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
            got[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    def med(key: str, per_trial: bool = False) -> dict[str, float]:
        return {side: statistics.median(s for r in rows for s in r[key]) if per_trial else
                statistics.median(r[key] for r in rows) for side, rows in got.items()}

    per, per_cpu, wall, cpu = med("trials", True), med("trials_cpu", True), med("wall"), med("cpu")
    recipe = ("hand loop with gradwise's recipe (clipping, warmup-cosine)" if args.same_recipe else
              "hand loop: constant LR, no clipping")
    recipe += "; bare study in a journal file" if args.bare_journal else "; bare study in memory"
    print(f"MNIST-1D MLP, random search, {args.trials} trials x {args.epochs} epochs, 1 thread, {args.repeats} "
          f"repeats (medians); {recipe}; load average {os.getloadavg()[0]:.1f}")
    print("| | bare Optuna, trained by hand | gradwise tune | ratio |")
    print("|---|---|---|---|")
    print(f"| seconds per trial | {per['optuna']:.2f} | {per['gradwise']:.2f} | "
          f"{per['gradwise'] / per['optuna']:.2f}x |")
    print(f"| CPU seconds per trial | {per_cpu['optuna']:.2f} | {per_cpu['gradwise']:.2f} | "
          f"{per_cpu['gradwise'] / per_cpu['optuna']:.2f}x |")
    print(f"| study wall seconds (data, trials, results) | {wall['optuna']:.1f} | {wall['gradwise']:.1f} | "
          f"{wall['gradwise'] / wall['optuna']:.2f}x |")
    print(f"| study CPU seconds | {cpu['optuna']:.1f} | {cpu['gradwise']:.1f} | "
          f"{cpu['gradwise'] / cpu['optuna']:.2f}x |")
    if "baseline" in got:
        print(f"\nbaseline gradwise ({args.baseline_src}), same run: seconds per trial {per['baseline']:.2f} "
              f"({per['baseline'] / per['optuna']:.2f}x bare Optuna), CPU seconds per trial {per_cpu['baseline']:.2f} "
              f"({per_cpu['baseline'] / per_cpu['optuna']:.2f}x), study wall {wall['baseline']:.1f} s "
              f"({wall['baseline'] / wall['optuna']:.2f}x), study CPU {cpu['baseline']:.1f} s "
              f"({cpu['baseline'] / cpu['optuna']:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--vs-optuna", action="store_true", help="gradwise tune's fixed costs against bare Optuna")
    ap.add_argument("--repeats", type=int, default=3, help="--vs-optuna: studies per side")
    ap.add_argument("--same-recipe", action="store_true", help="--vs-optuna: the hand loop clips and schedules "
                    "the LR as gradwise's defaults do")
    ap.add_argument("--bare-journal", action="store_true", help="--vs-optuna: bare Optuna keeps its study in a "
                    "journal file, as gradwise tune does (default: in memory)")
    ap.add_argument("--baseline-src", default=None, help="--vs-optuna: also gradwise imported from this src/ tree")
    ap.add_argument("--child", choices=["gradwise", "optuna"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child or args.vs_optuna:
        args.trials, args.epochs = args.trials or 8, args.epochs or 2
        if args.child:
            vs_optuna_child(args.child, args.epochs, args.trials, args.same_recipe, args.bare_journal)
        else:
            vs_optuna(args)
        return
    args.trials, args.epochs = args.trials or 30, args.epochs or 20

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
