"""Everything a study needs, resolved once from the config and the command line: space, objectives, budget,
storage, sampler and pruner. Each worker process resolves the same setup from the same arguments."""

from __future__ import annotations

import hashlib
import math
import os
import re
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna

from gradwise.config import RunConfig
from gradwise.errors import ConfigError
from gradwise.tune.space import Param, build_space, grid_size, grid_space
from gradwise.tune.storage import StorageSpec, _module_available, parse_storage

SUMMARY_METRICS = ("parameters", "seconds")  # from the run summary, not per epoch (cannot drive a pruner)
_MAXIMIZE = ("accuracy", "r2", "f1", "auc", "auroc", "precision", "recall")  # balanced_accuracy: "accuracy"
DEFAULT_TRIALS = 20


def auto_direction(metric: str) -> str:
    return "maximize" if any(k in metric for k in _MAXIMIZE) else "minimize"


@dataclass
class TuneSetup:
    config: Path  # the YAML the study was started from (workers re-read it)
    overrides: list[str]
    base: RunConfig  # the run config of every trial, before the sampled values (tune section removed)
    space: list[Param]
    metrics: list[str]
    directions: list[str]
    name: str
    dir: Path
    storage: StorageSpec
    trials: int | None  # the study's budget (None: until the timeout)
    timeout: float | None
    workers: int
    sampler: str
    pruner: str
    seed: int
    startup: int | None = None  # tune.startup_trials as given (None: startup_trials() decides)
    test: bool = False  # tune.test: trials evaluate the test split
    checkpoint_seconds: float = 300.0  # tune.checkpoint_seconds (gradwise.train.trial)

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def prunable(self) -> bool:
        """optuna prunes single-objective studies only, on a metric reported every epoch."""
        return self.pruner != "none" and not self.multi and self.metrics[0] not in SUMMARY_METRICS

    def label(self) -> str:
        return ", ".join(f"{m} ({'max' if d == 'maximize' else 'min'})" for m, d in zip(self.metrics, self.directions,
                                                                                    strict=True))


def _check_metric(name: str) -> None:
    if name in SUMMARY_METRICS or re.fullmatch(r"(train|val)_[a-z0-9_]+", name):
        return
    hint = ""
    if name in ("accuracy", "loss", "r2", "mae", "f1", "precision", "recall", "balanced_accuracy", "auroc"):
        hint = f" Did you mean 'val_{name}'?"
    raise ConfigError(f"tune.metric '{name}' is not something a run reports.{hint} Use a per-epoch metric of "
                      "metrics.jsonl (val_loss; val_accuracy, val_f1, val_precision, val_recall, "
                      "val_balanced_accuracy, val_auroc for classification; val_mae or val_r2 for regression; "
                      "train_loss) or parameters / seconds from the run summary.")


def _study_name(text: str) -> str:
    # the name becomes a directory and a database key: keep it to a safe alphabet
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    if not name:
        raise ConfigError(f"study name '{text}' has no usable characters; use letters, digits, '-', '_' or '.'.")
    return name


def resolve_setup(cfg: RunConfig, config: Path, overrides: list[str], *, trials: int | None = None,
                  storage: str | None = None, study: str | None = None, workers: int | None = None,
                  out: Path | None = None) -> TuneSetup:
    """Check the tune section (ConfigError on any problem) and combine it with the command-line options."""
    if cfg.tune is None:
        raise ConfigError(f"{config}: there is no tune: section, so there is nothing to search. Add one, e.g.\n"
                          "tune:\n  metric: val_accuracy\n  trials: 20\n  space:\n"
                          "    optim.lr: {low: 1.0e-4, high: 1.0e-1, log: true}\n"
                          "    model.activation: [relu, gelu, tanh]")
    tc = cfg.tune
    space = build_space(cfg)
    # a tracker that is asked for and not installed: said once now, not by every trial
    from gradwise.track import check_trackers

    check_trackers(cfg)

    metrics = list(tc.metrics) if tc.metrics else [tc.metric]
    for m in metrics:
        _check_metric(m)
    if len(set(metrics)) != len(metrics):
        raise ConfigError(f"tune.metrics {metrics} names a metric twice; list each objective once.")
    if tc.directions is not None:
        if len(tc.directions) != len(metrics):
            raise ConfigError(f"tune.directions has {len(tc.directions)} entries but tune.metrics has {len(metrics)};"
                              " give one direction (minimize, maximize or auto) per metric, or leave directions out.")
        directions = [auto_direction(m) if d == "auto" else d for m, d in zip(metrics, tc.directions, strict=True)]
    elif len(metrics) == 1 and tc.direction != "auto":
        directions = [tc.direction]
    else:
        directions = [auto_direction(m) for m in metrics]

    if len(metrics) > 1 and tc.sampler == "cmaes":
        raise ConfigError("tune.sampler=cmaes optimizes a single objective, but tune.metrics has "
                          f"{len(metrics)}: {metrics}. Use sampler nsga2 (or tpe, random, gp) for several metrics.")
    if tc.sampler == "cmaes" and not _module_available("cmaes"):
        raise ConfigError("tune.sampler=cmaes needs the cmaes package, which is not installed. Install it with "
                          "`pip install cmaes`, or use sampler tpe or gp.")
    budget = trials if trials is not None else tc.trials
    if budget is not None and budget < 1:
        raise ConfigError(f"--trials {budget}: the number of trials must be at least 1.")
    if tc.sampler == "grid":
        size = grid_size(space)  # also checks that every parameter is finite
        # no count given: the whole grid; past the grid GridSampler would only repeat points
        budget = size if budget is None else min(budget, size)
    elif budget is None and tc.timeout is None:
        budget = DEFAULT_TRIALS

    n_workers = workers if workers is not None else tc.workers
    if n_workers < 1:
        raise ConfigError(f"--workers {n_workers}: give at least 1 worker process.")
    name = _study_name(study or tc.study or cfg.name)
    study_dir = Path(out) if out is not None else Path("studies") / name
    spec = parse_storage(storage if storage is not None else tc.storage, study_dir, n_workers)

    base = cfg.model_copy(deep=True)
    base.tune = None
    return TuneSetup(config=Path(config), overrides=list(overrides), base=base, space=space, metrics=metrics,
                     directions=directions, name=name, dir=study_dir.resolve(), storage=spec, trials=budget,
                     timeout=tc.timeout, workers=n_workers, sampler=tc.sampler, pruner=tc.pruner, seed=cfg.seed,
                     startup=tc.startup_trials, test=tc.test, checkpoint_seconds=tc.checkpoint_seconds)


# ------------------------------------------------------------------------------------- samplers and pruners


def sampler_seed(setup: TuneSetup, existing: int, worker: int) -> int:
    """Seed of one worker's sampler.

    A fresh single-process study uses the config's seed (reproducible). Re-runs and parallel workers must not
    replay the same random sequence (they would propose the trials already run), so the number of existing
    trials, the worker index and, on a shared server, the machine and process are mixed in.
    """
    if existing == 0 and worker == 0 and setup.storage.kind != "postgresql":
        return setup.seed
    salt = f"{setup.seed}:{existing}:{worker}"
    if setup.storage.kind == "postgresql":
        salt += f":{socket.gethostname()}:{os.getpid()}"
    return int.from_bytes(hashlib.sha1(salt.encode()).digest()[:4], "big")


def startup_trials(setup: TuneSetup) -> int:
    """Random trials before tpe, gp or cmaes take over (tune.startup_trials, or a default from the space and budget).

    Two random trials (the earlier default for 8 trials) are too few for any model: a GP cannot estimate a length
    scale per searched key from fewer points than keys, and TPE's "good" and "bad" densities built from a handful
    of results are mostly its prior, so its picks are no better than random ones. The default is Ax's rule for
    its random (Sobol) start: twice the searched keys, at most a fifth of the trials, but at least 5 (5 keys and
    50+ trials: optuna's own default of 10). On top of it, never more than half the trials, so that the sampler
    asked for still chooses at least half of a small study: 8 trials are 4 random ones, then 4 from the model.
    CMA-ES is different: it starts from the middle of the space and learns only from its own generations, never
    from the random trials, so a longer random start only takes trials away from it (optuna's default, 1).
    gp and cmaes count completed trials only, so with a pruner their random start lasts until that many trials
    ran to the end; tpe counts pruned trials too.
    """
    if setup.startup is not None:
        return setup.startup
    if setup.sampler == "cmaes":
        return 1
    n = setup.trials
    startup = 2 * len(setup.space)
    if n is not None:
        startup = min(startup, n // 5)
    startup = max(startup, 5)
    if n is not None:
        startup = min(startup, max(1, n // 2))
    return startup


def make_sampler(setup: TuneSetup, seed: int) -> optuna.samplers.BaseSampler:
    n = setup.trials or 100
    startup = startup_trials(setup)
    name = setup.sampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "grid":
            # every process must shuffle the grid identically (grid ids are shared through the storage)
            return optuna.samplers.GridSampler(grid_space(setup.space), seed=setup.seed)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "tpe":
            # multivariate TPE models interactions (lr x batch size); constant_liar keeps parallel workers apart
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True,
                                              constant_liar=True)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
        if name == "nsga2":
            # a generation of 50 (optuna's default) would never get past random search in a small budget
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n // 3)))
    raise ConfigError(f"tune.sampler '{name}' is unknown; use grid, random, tpe, gp, cmaes or nsga2.")


def make_pruner(setup: TuneSetup) -> optuna.pruners.BasePruner:
    name = setup.pruner
    epochs = max(1, int(setup.base.train.epochs))
    for p in setup.space:  # when epochs is searched, the longest run is the resource's maximum
        if p.key == "train.epochs" and p.kind != "categorical":
            epochs = max(epochs, int(p.high))
    if name == "none" or not setup.prunable:
        return optuna.pruners.NopPruner()
    n = setup.trials or 100
    if name == "median":
        # n_startup_trials counts finished (not pruned) trials. The median of one or two of them is their luck, not
        # a median: a lucky first trial would prune most of what follows, an unlucky one nothing (Ray Tune's
        # median stopping rule also waits for 3). optuna's 5 from 25 trials on; skip the noisiest first fifth.
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(3, n // 5)), n_warmup_steps=epochs // 5)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    raise ConfigError(f"tune.pruner '{name}' is unknown; use none, median, successive_halving or hyperband.")


def budget_text(setup: TuneSetup) -> str:
    parts = []
    if setup.trials is not None:
        parts.append(f"{setup.trials} trials")
    if setup.timeout is not None:
        parts.append(f"{setup.timeout:g} s")
    return " / ".join(parts) if parts else "unlimited"


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
