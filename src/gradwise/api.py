"""The Python API: `gradwise.fit(model, train, ...)` for your own nn.Module, `gradwise.train(config)` for a config.

Progressive disclosure: `fit(model, (X, y), loss="cross_entropy")` is a complete call; keywords tune the recipe;
`callbacks=[...]` plug into the loop's events; the Trainer in `gradwise.train.loop` is there for your own loop.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from gradwise.config import OptimConfig, RunConfig, apply_overrides, load_config, read_yaml, validate_config
from gradwise.errors import CheckpointError, ConfigError, DataError
from gradwise.train.callbacks import EarlyStopping, ProgressBar, Unfreeze
from gradwise.train.checkpoint import load_checkpoint, seed_everything
from gradwise.train.events import Callback
from gradwise.train.loop import Trainer, make_autocast, resolve_device, resolve_precision
from gradwise.train.rundir import RunDir, default_run_dir
from gradwise.train.threads import CpuLoad, choose_threads, cpu_threads


@dataclass
class Run:
    """What a fit returns: the trained model, per-epoch history, the doctor's findings and the summary."""

    model: nn.Module
    history: list[dict[str, Any]]
    findings: list[Any]
    summary: dict[str, Any]
    dir: Path
    config: RunConfig
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    def export(self, format: str = "onnx", out: str | Path | None = None, *, which: str = "auto") -> Path:
        """Export this run's weights (best when early stopping restored them, else last): onnx, torchscript or
        safetensors. Returns the written path (default: DIR/export/model.<ext>). See `gradwise export --help`."""
        from gradwise.export import export_run

        return export_run(self.dir, format, out, which=which)

    def __repr__(self) -> str:
        test = {k: round(v, 4) for k, v in self.summary.get("test", {}).items()}
        return (f"Run(status={self.status!r}, epochs={len(self.history)}, test={test}, "
                f"findings={[f.code for f in self.findings]}, dir='{self.dir}')")


# keyword -> dotted config key, for fit(**options)
OPTIONS: dict[str, str] = {
    "schedule": "schedule.name", "warmup": "schedule.warmup", "min_lr": "schedule.min_lr",
    "clip_grad": "train.clip_grad", "clip_mode": "train.clip_mode", "accumulate": "train.accumulate",
    "precision": "train.precision", "device": "train.device", "progress": "train.progress",
    "checkpoint_every": "train.checkpoint_every", "eval_every": "train.eval_every", "compile": "train.compile",
    "early_stopping": "train.early_stopping.enabled", "patience": "train.early_stopping.patience",
    "monitor": "train.early_stopping.monitor", "min_delta": "train.early_stopping.min_delta",
    "restore_best": "train.early_stopping.restore_best",
    "weight_decay": "optim.weight_decay", "momentum": "optim.momentum", "nesterov": "optim.nesterov",
    "betas": "optim.betas", "eps": "optim.eps", "l1": "optim.l1", "l2": "optim.l2",
    "label_smoothing": "loss.label_smoothing", "class_weights": "loss.class_weights",
    "threads": "train.threads", "repair": "doctor.repair", "probe_every": "doctor.probe_every", "name": "name",
}
_OTHER_KEYWORDS = ("task", "forward", "augment", "target_transform", "config", "callbacks")

_CLASSIFICATION_LOSSES = ("cross_entropy", "nll", "hinge", "bce_with_logits")
_REGRESSION_LOSSES = ("mse", "mae", "huber")


def fit(model: nn.Module, train: Any, val: Any = None, test: Any = None, *, loss: Any = "auto",
        optimizer: Any = "adamw", lr: float | None = None, epochs: int | None = None,
        batch_size: int | None = None, out: str | Path | None = None, seed: int = 0, doctor: bool = True,
        resume: str | Path | None = None, callbacks: list[Callback] | None = None,
        config: RunConfig | dict[str, Any] | str | Path | None = None, **options: Any) -> Run:
    """Train `model` on `train` (a Dataset, DataLoader or (X, y) pair) and return a Run.

    `loss` is a name (cross_entropy, mse, ...) or any callable(output, target). `optimizer` is a name or a torch
    optimizer instance; an instance means "use exactly this": no schedule or clipping is added unless asked for
    with `schedule=` / `clip_grad=`. Other keywords map onto the config (see `gradwise.api.OPTIONS`).
    """
    load = CpuLoad()  # what other processes keep busy while the run sets up decides train.threads: auto
    extra = {k: options.pop(k) for k in list(options) if k in _OTHER_KEYWORDS}
    for key in options:
        if key not in OPTIONS:
            close = difflib.get_close_matches(key, list(OPTIONS) + list(_OTHER_KEYWORDS), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"fit() got an unknown keyword '{key}'.{hint} Valid keywords: "
                              f"{', '.join(sorted(OPTIONS))}.")

    # the config: the stored one when resuming (so the run goes on as it began), else given or defaults
    if resume is not None:
        base = read_yaml(_resume_dir(resume) / "config.yaml")
    elif isinstance(config, RunConfig):
        base = config.to_dict()
    elif isinstance(config, str | Path):
        base = read_yaml(config)
    else:
        base = dict(config or {})
    overrides: dict[str, Any] = {"seed": seed} if resume is None else {}
    if epochs is not None:
        overrides["train.epochs"] = epochs
    if batch_size is not None:
        overrides["train.batch_size"] = batch_size
    if lr is not None:
        overrides["optim.lr"] = lr
    if not doctor:
        overrides["doctor.enabled"] = False
    user_optimizer = optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
    if user_optimizer is not None and resume is None:
        # "use exactly this": no schedule or clipping unless the caller asks
        overrides["optim.name"] = type(user_optimizer).__name__.lower()
        overrides["optim.lr"] = float(user_optimizer.param_groups[0]["lr"])
        overrides.setdefault("schedule.name", "constant")
        overrides["train.clip_grad"] = None
    elif isinstance(optimizer, str) and resume is None:
        overrides["optim.name"] = optimizer
    if isinstance(loss, str) and resume is None:
        overrides["loss.name"] = loss
    for key, value in options.items():
        overrides[OPTIONS[key]] = value
    if out is not None:
        overrides["out"] = str(out)
    apply_overrides(base, overrides)
    cfg = validate_config(base, "fit()")

    task = extra.get("task") or _infer_task(loss, train)
    train_loader, val_loader, test_loader = _loaders(cfg, train, val, test)
    return _execute(cfg, model, train_loader, val_loader, test_loader, task=task, load=load,
                    loss=loss if not isinstance(loss, str) else None, optimizer=user_optimizer,
                    callbacks=callbacks or extra.get("callbacks") or [], resume=resume,
                    forward=extra.get("forward"), augment=extra.get("augment"),
                    target_transform=extra.get("target_transform"))


def train(config: RunConfig | str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None, *,
          resume: str | Path | None = None, callbacks: list[Callback] | None = None, fold: int | None = None,
          console: Console | None = None, trust_code: bool = False) -> Run:
    """Train a built-in model on a built-in or file dataset, as `gradwise train` does.

    With ``data.folds = K > 1`` this trains the one fold given by ``fold`` (0..K-1); to train every fold and get
    mean ± std, call `gradwise.cross_validate` (what `gradwise train` does then).

    ``resume`` opens a run directory, whose config.yaml is data: a ``model.factory`` it names is imported only with
    ``trust_code=True`` or its module under a GRADWISE_TRUSTED_MODULES prefix. A factory in your own config (or one
    given as an override when resuming) is imported as always.
    """
    from gradwise.data import load_data, make_loaders_from_bundle
    from gradwise.models import build_model

    load = CpuLoad()  # what other processes keep busy while the run sets up decides train.threads: auto
    if resume is not None:
        rdir = _resume_dir(resume)
        cfg = load_config(rdir / "config.yaml", overrides)
        cfg.out = str(rdir)
        _check_resumed_factory(rdir, cfg, trust_code)
    elif isinstance(config, RunConfig):
        cfg = validate_config(apply_overrides(config.to_dict(), overrides or []), "config")
    else:
        cfg = load_config(config, overrides)
    if cfg.data.folds > 1 and fold is None:
        raise ConfigError(f"data.folds = {cfg.data.folds}: gradwise.train trains one run, so give fold=0..."
                          f"{cfg.data.folds - 1}, or call gradwise.cross_validate(config) to train every fold and "
                          "get mean ± std (as `gradwise train` does; to continue a cross-validation, resume the "
                          "directory that holds its fold-0, fold-1, ... runs).")
    seed_everything(cfg.seed)
    bundle = load_data(cfg.data, cfg.seed, fold=fold, loss=cfg.loss.name)
    if resume is None and not cfg.out:
        cfg.out = str(default_run_dir(cfg.name))
    _write_data_report(Path(cfg.out), bundle.report)
    model = build_model(cfg.model, bundle.input_shape, bundle.n_outputs, bundle.task)
    _apply_transfer(cfg, model)
    train_loader, val_loader, test_loader = make_loaders_from_bundle(bundle, cfg)
    run = _execute(cfg, model, train_loader, val_loader, test_loader, task=bundle.task, load=load, loss=None,
                   optimizer=None, callbacks=callbacks or [], resume=resume, bundle=bundle, console=console)
    return run


# ------------------------------------------------------------------------------------------- internals


def _write_data_report(run_path: Path, report: dict[str, Any]) -> None:
    """DIR/data_report.json: what loading did to the data (rows dropped, values imputed/clipped, splits, classes)."""
    from gradwise.train.checkpoint import atomic_write_json

    run_path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_path / "data_report.json", report)


def _execute(cfg: RunConfig, model: nn.Module, train_loader: Any, val_loader: Any, test_loader: Any, *,
             load: CpuLoad | None = None, **kwargs: Any) -> Run:
    # train.threads for everything the run does on the CPU (auto LR and batch size too); the caller's setting after
    with cpu_threads(choose_threads(cfg.train.threads, load)):
        # config.yaml records the count used: kernels with parallel reductions (BatchNorm, ...) round differently
        # with another count, so a resume (and a re-run of DIR/config.yaml) must compute with the same one
        cfg.train.threads = torch.get_num_threads()
        return _run(cfg, model, train_loader, val_loader, test_loader, **kwargs)


def _run(cfg: RunConfig, model: nn.Module, train_loader: Any, val_loader: Any, test_loader: Any, *,
         task: str | None, loss: Any, optimizer: torch.optim.Optimizer | None, callbacks: list[Callback],
         resume: str | Path | None, bundle: Any = None, forward: Any = None, augment: Any = None,
         target_transform: Any = None, console: Console | None = None) -> Run:
    from gradwise.recipes import build_loss, build_optimizer, build_scheduler, penalty

    device = resolve_device(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, device)
    run_path = _resume_dir(resume) if resume is not None else Path(cfg.out or default_run_dir(cfg.name))
    cfg.out = str(run_path)
    run_dir = RunDir(run_path)
    resume_state = _resume_state(run_dir) if resume is not None else None
    if resume is None:
        seed_everything(cfg.seed)
    model.to(device)

    n_outputs = bundle.n_outputs if bundle is not None else _output_width(model, train_loader, device, forward)
    if loss is None:
        class_counts = getattr(bundle, "class_counts", None)
        loss_cfg = cfg.loss
        balance_weights = getattr(bundle, "class_weights", None)
        if balance_weights is not None and cfg.loss.class_weights is None:
            # data.balance=class_weights: the loss weighs each class by n / (C * count) of the training split
            loss_cfg = cfg.loss.model_copy(update={"class_weights": [float(w) for w in balance_weights]})
        loss_fn = build_loss(loss_cfg, task or "classification", n_outputs, class_counts)
        cfg.loss.name = getattr(loss_fn, "name", cfg.loss.name)
    else:
        loss_fn = loss
        if cfg.loss.name == "auto":
            cfg.loss.name = getattr(loss, "name", type(loss).__name__)
    if cfg.train.batch_size == "auto":
        _auto_batch(cfg, model, loss_fn, train_loader, device, precision, forward, console,
                    user_optimizer=optimizer is not None)
    lr_search: LRSearch | None = None
    if optimizer is None:
        if cfg.optim.lr == "auto":
            # `optim.lr: auto` runs the LR range test first; model and RNG state are restored afterwards. Its
            # curve, plot and pick go into this run's directory (config.yaml then records the LR used).
            lr_search = find_lr(cfg, model, loss_fn, train_loader, device, console=console)
            cfg.optim.lr = lr_search.pick()
            if run_dir.is_main:
                lr_search.save(run_path)
        groups = None
        if cfg.model.lr_decay_groups is not None:
            # discriminative LRs (fastai's fine_tune idea): each block nearer the input gets lr × factor less
            from gradwise.models import param_groups_by_depth

            blocks = param_groups_by_depth(model)
            groups = [{"params": names, "lr_scale": cfg.model.lr_decay_groups ** (len(blocks) - 1 - i)}
                      for i, names in enumerate(blocks)]
        optimizer = build_optimizer(model, cfg.optim, groups=groups)
    accumulate = cfg.train.accumulate
    steps_per_epoch = -(-len(train_loader) // accumulate)
    schedule = build_scheduler(optimizer, cfg.schedule, steps_per_epoch, cfg.train.epochs)
    reg = (lambda m: penalty(m, cfg.optim.l1, cfg.optim.l2)) if (cfg.optim.l1 or cfg.optim.l2) else None
    if augment is None and bundle is not None and cfg.data.augment:
        from gradwise.data import build_augment

        augment = build_augment(cfg.data, bundle.input_shape, kind=getattr(bundle, "kind", None))
    if target_transform is None and bundle is not None and getattr(bundle, "preprocessor", None) is not None \
            and cfg.data.scale_target:
        target_transform = bundle.preprocessor.inverse_target

    if cfg.model.freeze_norm_stats:
        from gradwise.models import keep_frozen_norms_in_eval

        keep_frozen_norms_in_eval(model)
    all_callbacks: list[Callback] = [EarlyStopping(cfg.train.early_stopping)]
    doctor_cb = None
    if cfg.doctor.enabled:
        from gradwise.doctor import Doctor

        doctor_cb = Doctor(cfg.doctor, task=task, bundle=bundle)
        all_callbacks.append(doctor_cb)
    if cfg.model.unfreeze_after is not None and cfg.model.freeze:
        all_callbacks.append(Unfreeze(cfg.model.unfreeze_after))
    if cfg.train.progress != "none":
        all_callbacks.append(ProgressBar(cfg.train.progress))
    all_callbacks.extend(callbacks)
    # what records and shows the run (steps.jsonl, report.html; TensorBoard, MLflow), each from its own package
    from gradwise.report import run_callbacks as report_callbacks
    from gradwise.track import run_callbacks as track_callbacks

    all_callbacks.extend(report_callbacks(cfg) + track_callbacks(cfg))

    run_dir.write_config(cfg.to_yaml())
    if bundle is not None and getattr(bundle, "preprocessor", None) is not None and run_dir.is_main:
        from gradwise.data.preprocess import LEGACY_PREPROCESS_FILE, PREPROCESS_FILE

        # data only (JSON): opening a run directory must never unpickle anything. A resumed older run's pickle is
        # superseded by the file written here, and removed so that no tool is tempted to open it.
        bundle.preprocessor.save(run_path / PREPROCESS_FILE)
        (run_path / LEGACY_PREPROCESS_FILE).unlink(missing_ok=True)
    trainer = Trainer(model, train_loader, val_loader, test_loader, config=cfg, loss_fn=loss_fn,
                      optimizer=optimizer, schedule=schedule, run_dir=run_dir, task=task, device=device,
                      precision=precision, callbacks=all_callbacks, penalty=reg, augment=augment, forward=forward,
                      target_transform=target_transform, console=console)
    if bundle is not None:  # a built-in model: the header names it (every one is an nn.Sequential underneath)
        trainer.model_name = cfg.model.factory or cfg.model.name
    if cfg.train.compile:
        trainer.forward = _compiled_forward(model)
    summary = trainer.fit(resume_state)
    findings = list(doctor_cb.findings) if doctor_cb is not None else []
    return Run(model=model, history=list(trainer.history), findings=findings, summary=summary, dir=run_path,
               config=cfg, extras={"trainer": trainer, "bundle": bundle, "lr_find": lr_search})


def _compiled_forward(model: nn.Module) -> Any:
    compiled = torch.compile(model)
    return lambda _m, x: compiled(x)


def _apply_transfer(cfg: RunConfig, model: nn.Module) -> None:
    if cfg.model.pretrained:
        from gradwise.models import load_pretrained

        load_pretrained(model, cfg.model.pretrained, cfg.model.pretrained_strict, cfg.model.pretrained_exclude)
    if cfg.model.freeze:
        from gradwise.models import freeze

        freeze(model, cfg.model.freeze)


def _resume_dir(resume: str | Path) -> Path:
    p = Path(resume)
    if not p.is_dir():
        raise CheckpointError(f"--resume '{p}': no such run directory. Give the directory a run was written to "
                              "(it holds config.yaml and checkpoints/last.pt).")
    if not (p / "config.yaml").exists():
        raise CheckpointError(f"--resume '{p}' is not a gradwise run directory (no config.yaml in it).")
    return p


def _check_resumed_factory(rdir: Path, cfg: RunConfig, trust_code: bool) -> None:
    """The trust check of a resumed run's model.factory (models.build.check_run_factory), made before any import.

    Only the factory the directory's config.yaml names is the directory's code: one the user gives as an override
    (``model.factory=mypkg:net``) is the user's own choice, as in a config file of their own.
    """
    from gradwise.models.build import check_run_factory

    if not cfg.model.factory:
        return
    # the stored config validated without overrides: the same normalisation, so equal means "from the directory"
    stored = load_config(rdir / "config.yaml").model.factory
    if cfg.model.factory == stored:
        check_run_factory(cfg.model, rdir / "config.yaml", trust_code)


def _resume_state(run_dir: RunDir) -> dict[str, Any] | None:
    if not run_dir.last.exists():
        return None  # stopped before its first checkpoint: start over in the same directory
    return load_checkpoint(run_dir.last)


def _infer_task(loss: Any, train: Any) -> str | None:
    name = loss if isinstance(loss, str) else getattr(loss, "name", None)
    if name in _CLASSIFICATION_LOSSES:
        return "classification"
    if name in _REGRESSION_LOSSES:
        return "regression"
    if isinstance(loss, nn.CrossEntropyLoss | nn.NLLLoss | nn.MultiMarginLoss | nn.BCEWithLogitsLoss):
        return "classification"
    if isinstance(loss, nn.MSELoss | nn.L1Loss | nn.HuberLoss | nn.SmoothL1Loss):
        return "regression"
    y = _peek_target(train)
    if y is None:
        return None
    return "regression" if torch.is_floating_point(y) else "classification"


def _peek_target(data: Any) -> torch.Tensor | None:
    try:
        if isinstance(data, tuple | list) and len(data) == 2:
            y = data[1]
            return y if isinstance(y, torch.Tensor) else torch.as_tensor(y[:1] if hasattr(y, "__getitem__") else y)
        if isinstance(data, torch.utils.data.DataLoader):
            return torch.as_tensor(next(iter(data))[1])
        if isinstance(data, torch.utils.data.Dataset):
            return torch.as_tensor(data[0][1])
    except Exception:
        return None
    return None


def _loaders(cfg: RunConfig, train: Any, val: Any, test: Any) -> tuple[Any, Any, Any]:
    from gradwise.data.loaders import make_loader

    if train is None:
        raise DataError("fit() needs training data: pass a Dataset, a DataLoader or an (X, y) pair.")
    from gradwise.train.batch_size import REFERENCE_BATCH

    # 'auto': the loaders are built before the model is on its device; _auto_batch resizes the training one later
    bs = cfg.train.batch_size if cfg.train.batch_size != "auto" else REFERENCE_BATCH
    common = {"seed": cfg.seed, "num_workers": cfg.data.num_workers}
    return (make_loader(train, bs, shuffle=True, split="train", **common),
            make_loader(val, bs, shuffle=False, split="val", **common) if val is not None else None,
            make_loader(test, bs, shuffle=False, split="test", **common) if test is not None else None)


def _auto_batch(cfg: RunConfig, model: nn.Module, loss_fn: Any, train_loader: Any, device: torch.device,
                precision: str, forward: Any, console: Console | None, user_optimizer: bool) -> None:
    """train.batch_size: auto -> the largest batch that fits on the GPU, LR scaled to match (train/batch_size.py)."""
    from gradwise.train.batch_size import choose_batch_size, sample_rows

    rows = sample_rows(train_loader) if hasattr(train_loader, "resize") else None
    if rows is None:
        raise ConfigError("train.batch_size = 'auto' needs a loader gradwise builds: pass the training data as "
                          "(X, y) or a Dataset rather than a DataLoader (its batch size is fixed), or give "
                          "train.batch_size a number.")
    choice = choose_batch_size(model, loss_fn, rows[0], rows[1], train_loader.dataset_size, device=device,
                               optimizer=str(cfg.optim.name).lower(), lr=cfg.optim.lr,
                               autocast=make_autocast(precision, device), forward=forward)
    train_loader.resize(choice.batch_size)
    cfg.train.batch_size = choice.batch_size  # config.yaml records the size used (and a resume reuses it)
    if choice.lr is not None and not user_optimizer:
        cfg.optim.lr = choice.lr
    if console is not None and cfg.train.progress != "none":
        console.print(choice.describe(), markup=False)


@torch.no_grad()
def _output_width(model: nn.Module, loader: Any, device: torch.device, forward: Any) -> int:
    batch = next(iter(loader))
    x = batch[0][:2].to(device) if isinstance(batch[0], torch.Tensor) else batch[0]
    was = model.training
    model.eval()  # eval: no dropout RNG draws, no BatchNorm statistics updated
    try:
        out = forward(model, x) if forward else model(x)
    finally:
        model.train(was)
    return int(out.shape[-1]) if out.ndim > 1 else 1


@dataclass
class LRSearch:
    """An LR range test's result and the schedule it was run for; ``pick()`` is the LR `optim.lr: auto` uses."""

    result: Any  # recipes.schedules.LRFindResult
    schedule: str = "constant"
    schedule_factor: float = 1.0  # the schedule's mean LR as a fraction of its peak (schedule_mean_factor)

    def pick(self) -> float:
        """The steepest-descent LR scaled up for the schedule's mean and capped at the curve's minimum.

        Falls back to the curve's minimum / 10, then to `optim.lr`'s default, when the sweep saw no descent.
        Rounded to 3 significant digits: the sweep cannot resolve more, and config.yaml records what is printed.
        """
        lr = self.result.recommend(self.schedule_factor)
        return float(f"{lr:.3g}") if lr is not None else float(OptimConfig.model_fields["lr"].default)

    def describe(self) -> list[str]:
        """What the finder found, as lines to print, LRs rounded to 3 significant digits; the pick comes last."""
        from gradwise.recipes.schedules import round_sig

        r = self.result
        seconds = r.extra.get("seconds")
        took = f" in {seconds:.3g} s" if isinstance(seconds, float) else ""
        lines = [f"swept {len(r.lrs)} steps{took}: {r.reason}",
                 f"steepest descent: {round_sig(r.suggestion)}",
                 f"loss minimum    : {round_sig(r.minimum)}"]
        if self.schedule_factor < 1.0:
            lines.append(f"schedule        : {self.schedule} (mean LR {self.schedule_factor:.2f} × peak: "
                         f"peak = steepest / {self.schedule_factor:.2f}, at most the minimum)")
        lines.append(f"suggested optim.lr={self.pick():.3g}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the rounded suggestions and pick, and the full curves (unrounded, for re-plotting)."""
        from gradwise.recipes.schedules import round_sig

        r = self.result
        return {"pick": round_sig(self.pick()), "steepest": round_sig(r.suggestion), "minimum": round_sig(r.minimum),
                "valley": round_sig(r.valley), "schedule": self.schedule,
                "schedule_factor": round(self.schedule_factor, 3), "stopped_early": r.stopped_early,
                "reason": r.reason, "seconds": round_sig(r.extra.get("seconds")),
                "lrs": r.lrs, "losses": [v if v == v else None for v in r.losses],  # NaN is not JSON
                "raw_losses": [v if v == v and abs(v) != float("inf") else None for v in r.raw_losses]}

    def save(self, directory: str | Path, plot: str | Path | None = None) -> Path:
        """Write ``lr_find.json`` and the plot (default ``lr_find.png``) into ``directory``; returns the plot path."""
        from gradwise.train.checkpoint import atomic_write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / "lr_find.json", self.to_dict())
        return self.result.plot(Path(plot) if plot is not None else directory / "lr_find.png", pick=self.pick())


def lr_find_dir(cfg: RunConfig) -> Path:
    """Where `gradwise lr-find` writes: ``cfg.out`` if given, else a fresh ``runs/<time>-lr-find-<name>``."""
    return Path(cfg.out) if cfg.out else default_run_dir(f"lr-find-{cfg.name}")


def save_lr_find(search: LRSearch, cfg: RunConfig, plot: str | Path | None = None) -> Path:
    """Save a standalone LR search (`gradwise lr-find`) run-style; returns the plot's path.

    Without ``plot``: ``lr_find.png`` and ``lr_find.json`` in :func:`lr_find_dir` (like a run, never the working
    directory). With ``plot``: the plot there and ``lr_find.json`` beside it.
    """
    if plot is not None:
        return search.save(Path(plot).parent, plot=plot)
    return search.save(lr_find_dir(cfg))


def find_lr(cfg: RunConfig, model: nn.Module, loss_fn: Any, train_loader: Any, device: torch.device,
            console: Console | None = None, steps: int = 100) -> LRSearch:
    """LR range test on a throw-away optimizer of the configured kind; model and RNG states are restored.

    The search knows the configured schedule (its mean LR relative to its peak) so that ``pick()`` is a peak LR.
    """
    from gradwise.recipes import build_optimizer, lr_find
    from gradwise.recipes.schedules import schedule_mean_factor

    optimizer = build_optimizer(model, cfg.optim, lr=1e-7)
    model.to(device)
    result = lr_find(model, loss_fn, train_loader, optimizer, device=device, steps=steps,
                     clip_grad=cfg.train.clip_grad)
    steps_per_epoch = -(-len(train_loader) // cfg.train.accumulate)
    search = LRSearch(result, schedule=str(cfg.schedule.name),
                      schedule_factor=schedule_mean_factor(cfg.schedule, steps_per_epoch, cfg.train.epochs))
    if console is not None and cfg.train.progress != "none":
        console.print("lr-find: " + "; ".join(search.describe()), markup=False)
    return search


def prepare(config: RunConfig | str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
            ) -> tuple[RunConfig, nn.Module, Any, Any, torch.device]:
    """Config -> (config, model, loss, train loader, device), as `gradwise train` builds them (for lr-find)."""
    from gradwise.data import load_data, make_loaders_from_bundle
    from gradwise.models import build_model
    from gradwise.recipes import build_loss

    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    seed_everything(cfg.seed)
    bundle = load_data(cfg.data, cfg.seed, loss=cfg.loss.name)
    model = build_model(cfg.model, bundle.input_shape, bundle.n_outputs, bundle.task)
    _apply_transfer(cfg, model)
    train_loader, _, _ = make_loaders_from_bundle(bundle, cfg)
    device = resolve_device(cfg.train.device)
    loss_fn = build_loss(cfg.loss, bundle.task, bundle.n_outputs, bundle.class_counts)
    return cfg, model, loss_fn, train_loader, device
