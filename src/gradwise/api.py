"""The Python API: `gradwise.fit(model, train, ...)` for your own nn.Module, `gradwise.train(config)` for a config.

Progressive disclosure: `fit(model, (X, y), loss="cross_entropy")` is a complete call; keywords tune the recipe;
`callbacks=[...]` plug into the loop's events; the Trainer in `gradwise.train.loop` is there for your own loop.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from gradwise.config import OptimConfig, RunConfig, apply_overrides, echo, load_config, read_yaml, validate_config
from gradwise.errors import CheckpointError, ConfigError, DataError
from gradwise.signals import Interrupted
from gradwise.track import check_trackers
from gradwise.train.callbacks import EarlyStopping, ProgressBar, Unfreeze
from gradwise.train.checkpoint import load_checkpoint, load_training_state, seed_everything
from gradwise.train.events import Callback
from gradwise.train.loop import Trainer, make_autocast, resolve_device, resolve_precision
from gradwise.train.rundir import RunDir, RunLock, claim_run_dir, default_run_dir, read_jsonl
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

    def export(self, format: str = "onnx", out: str | Path | None = None, *, which: str = "auto",
               preprocessing: bool = True, check: bool = True, trust_code: bool = False,
               example: Any = None) -> Path:
        """Export this run's weights (best when early stopping restored them, else last): onnx, torchscript or
        safetensors. Returns the written path (default: DIR/export/model.<ext>); FILE.json beside it says what the
        model takes and returns. See `gradwise export --help`.

        A run of `gradwise.fit` on your own module exports `self.model` itself (its directory cannot rebuild it),
        traced on a few rows of its training inputs (or ``example``, e.g. ``X[:2]``); it takes what fit() was given.
        """
        from gradwise.export import ExportError, export_run

        if self.extras.get("bundle") is None and self.model is not None:  # gradwise.fit: the model is the user's
            trainer = self.extras.get("trainer")
            if getattr(trainer, "forward", None) is not None and str(format).lower() != "safetensors":
                raise ExportError(f"cannot export run '{self.dir}': fit(forward=...) calls the model its own way, "
                                  "which an export of the module alone would not do. Wrap model and forward in one "
                                  "nn.Module and export that with torch.onnx.export / torch.jit.trace, or export the "
                                  "weights: run.export('safetensors').")
            if example is None and trainer is not None:
                example = trainer.train_loader
            loss = self.config.loss.name
            task = getattr(trainer, "task", None) or ("classification" if loss in _CLASSIFICATION_LOSSES else
                                                      "regression" if loss in _REGRESSION_LOSSES else None)
            return export_run(self.dir, format, out, which=which, check=check, model=self.model, example=example,
                              task=task)
        return export_run(self.dir, format, out, which=which, preprocessing=preprocessing, check=check,
                          trust_code=trust_code)

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
    "track": "track", "log_every": "train.log_every", "deterministic": "train.deterministic",
    "ema": "train.ema", "swa": "train.swa", "activation_checkpointing": "train.activation_checkpointing",
}
_OTHER_KEYWORDS = ("task", "forward", "augment", "target_transform", "config", "callbacks")

_CLASSIFICATION_LOSSES = ("cross_entropy", "nll", "hinge", "bce_with_logits")
_REGRESSION_LOSSES = ("mse", "mae", "huber")


def fit(model: nn.Module, train: Any, val: Any = None, test: Any = None, *, loss: Any = "auto",
        optimizer: Any = "adamw", lr: float | None = None, epochs: int | None = None,
        batch_size: int | None = None, out: str | Path | None = None, seed: int = 0, doctor: bool = True,
        resume: str | Path | None = None, callbacks: list[Callback] | None = None,
        config: RunConfig | dict[str, Any] | str | Path | None = None, overwrite: bool = False,
        **options: Any) -> Run:
    """Train `model` on `train` (a Dataset, DataLoader or (X, y) pair) and return a Run.

    `loss` is a name (cross_entropy, mse, ...) or any callable(output, target). `optimizer` is a name or a torch
    optimizer instance; an instance means "use exactly this": no schedule or clipping is added unless asked for
    with `schedule=` / `clip_grad=`. Other keywords map onto the config (see `gradwise.api.OPTIONS`).

    `out` must be a new or empty directory; ``overwrite=True`` clears a previous run's files there first.
    ``resume=DIR`` continues the run in DIR (keywords then may change only what a resumed run can apply, see
    `check_resume_overrides`); a completed run is not trained again unless ``epochs`` extends it.
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
    stored: RunConfig | None = None
    if resume is not None:
        rdir = _resume_dir(resume)
        if out is not None and Path(out).resolve() != rdir.resolve():
            raise ConfigError(f"fit(resume='{rdir}', out='{out}'): a resumed run writes to its own directory; leave "
                              "out= out, or copy the run directory to out first and resume the copy.")
        base = read_yaml(rdir / "config.yaml")
        stored = validate_config(read_yaml(rdir / "config.yaml"), str(rdir / "config.yaml"))
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
    if out is not None and resume is None:
        overrides["out"] = str(out)
    apply_overrides(base, overrides)
    cfg = validate_config(base, "fit()")
    check_trackers(cfg)  # a tracker package that is missing: said before any directory is made

    opened = _open_run(cfg, resume, stored, overwrite, _distributed(cfg))
    with _claimed(opened):
        if opened.finished is not None:
            return _finished_run(opened, cfg, model)
        task = extra.get("task") or _infer_task(loss, train)
        train_loader, val_loader, test_loader = _loaders(cfg, train, val, test, model)
        return _execute(cfg, model, train_loader, val_loader, test_loader, task=task, load=load,
                        loss=loss if not isinstance(loss, str) else None, optimizer=user_optimizer,
                        callbacks=callbacks or extra.get("callbacks") or [], opened=opened,
                        forward=extra.get("forward"), augment=extra.get("augment"),
                        target_transform=extra.get("target_transform"))


def train(config: RunConfig | str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None, *,
          resume: str | Path | None = None, callbacks: list[Callback] | None = None, fold: int | None = None,
          console: Console | None = None, trust_code: bool = False, overwrite: bool = False) -> Run:
    """Train a built-in model on a built-in or file dataset, as `gradwise train` does.

    With ``data.folds = K > 1`` this trains the one fold given by ``fold`` (0..K-1); to train every fold and get
    mean ± std, call `gradwise.cross_validate` (what `gradwise train` does then).

    ``resume`` opens a run directory, whose config.yaml is data: a ``model.factory`` it names is imported only with
    ``trust_code=True`` or its module under a GRADWISE_TRUSTED_MODULES prefix. A factory in your own config (or one
    given as an override when resuming) is imported as always.

    A new run's ``out`` must be a new or empty directory (``overwrite=True`` clears a previous run's files there);
    the directory is locked while the run writes it. Resuming, only overrides a resumed run can apply are accepted
    (`check_resume_overrides`), all checked before anything is written; a completed run is not trained again (its
    Run is returned as it ended) unless ``train.epochs`` extends it.
    """
    from gradwise.data import load_data, make_loaders_from_bundle
    from gradwise.data.text import init_embeddings, vocab_size_of
    from gradwise.models import build_model

    load = CpuLoad()  # what other processes keep busy while the run sets up decides train.threads: auto
    stored: RunConfig | None = None
    if resume is not None:
        rdir = _resume_dir(resume)
        stored = load_config(rdir / "config.yaml")
        cfg = load_config(rdir / "config.yaml", overrides)
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
    check_trackers(cfg)  # a tracker package that is missing: said before any directory is made
    # the directory first (checked, locked, config.yaml written), then the heavy set-up: a run stopped or killed
    # from here on leaves a directory that `--resume` continues
    opened = _open_run(cfg, resume, stored, overwrite, _distributed(cfg))
    with _claimed(opened):
        seed_everything(cfg.seed)
        bundle = load_data(cfg.data, cfg.seed, fold=fold, loss=cfg.loss.name)
        model = build_model(cfg.model, bundle.input_shape, bundle.n_outputs, bundle.task,
                            vocab_size=vocab_size_of(bundle.preprocessor))
        if cfg.model.embeddings:  # word vectors into a text model's embedding table (data/text.py)
            bundle.report["embeddings"] = init_embeddings(model, bundle.preprocessor, cfg.model.embeddings)
        if opened.finished is not None:
            return _finished_run(opened, cfg, model, bundle)
        if opened.state is not None and getattr(bundle, "stream", None) is not None:
            from gradwise.data.stream import check_resumed_stream  # data.stream: the position needs the same files

            check_resumed_stream(opened.path, bundle.report)
        if opened.dist is None or opened.dist.is_main:
            _write_data_report(opened.path, bundle.report)
        _apply_transfer(cfg, model)
        train_loader, val_loader, test_loader = make_loaders_from_bundle(bundle, cfg)
        return _execute(cfg, model, train_loader, val_loader, test_loader, task=bundle.task, load=load, loss=None,
                        optimizer=None, callbacks=callbacks or [], opened=opened, bundle=bundle, console=console)


# ------------------------------------------------------------------------------------------- internals


def _write_data_report(run_path: Path, report: dict[str, Any]) -> None:
    """DIR/data_report.json: what loading did to the data (rows dropped, values imputed/clipped, splits, classes)."""
    from gradwise.train.checkpoint import atomic_write_json

    run_path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_path / "data_report.json", report)


def _execute(cfg: RunConfig, model: nn.Module, train_loader: Any, val_loader: Any, test_loader: Any, *,
             load: CpuLoad | None = None, **kwargs: Any) -> Run:
    from gradwise.determinism import deterministic_mode

    # train.threads for everything the run does on the CPU (auto LR and batch size too); the caller's setting after.
    # train.deterministic: torch's deterministic mode for this run only (see gradwise.determinism)
    with cpu_threads(choose_threads(cfg.train.threads, load)), deterministic_mode(cfg.train.deterministic):
        # config.yaml records the count used: kernels with parallel reductions (BatchNorm, ...) round differently
        # with another count, so a resume (and a re-run of DIR/config.yaml) must compute with the same one
        cfg.train.threads = torch.get_num_threads()
        return _run(cfg, model, train_loader, val_loader, test_loader, **kwargs)


def _run(cfg: RunConfig, model: nn.Module, train_loader: Any, val_loader: Any, test_loader: Any, *,
         task: str | None, loss: Any, optimizer: torch.optim.Optimizer | None, callbacks: list[Callback],
         opened: OpenedRun, bundle: Any = None, forward: Any = None, augment: Any = None,
         target_transform: Any = None, console: Console | None = None) -> Run:
    from gradwise.recipes import build_loss, build_optimizer, build_scheduler, penalty

    dist = opened.dist  # a data-parallel run (gradwise.train.distributed), or None
    device = dist.device if dist is not None else resolve_device(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, device)
    run_path = opened.path
    cfg.out = str(run_path)
    run_dir = RunDir(run_path, is_main=dist is None or dist.is_main)  # one process writes the directory
    resume_state = opened.state
    if resume_state is None:
        # a new run, or a resumed one stopped before its first checkpoint: it starts over, so it must draw the same
        # random numbers as an uninterrupted run from here on (dropout masks, the LR finder, shuffling)
        seed_everything(cfg.seed)
        if opened.resumed and run_dir.is_main:
            _forget_unsaved_progress(run_dir)
    model.to(device)
    if cfg.train.activation_checkpointing:
        from gradwise.models.checkpointing import enable_activation_checkpointing

        enable_activation_checkpointing(model)

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
        from gradwise.data.loaders import eval_batch_size

        for loader in (val_loader, test_loader):  # evaluation batches follow the training batch (eval_batch_size)
            if hasattr(loader, "resize"):
                loader.resize(eval_batch_size(cfg.train.batch_size))
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
    if dist is not None:  # rank 0's auto batch size and LR for all; then each process's part of the data
        train_loader, val_loader, test_loader = dist.prepare(cfg, train_loader, val_loader, test_loader, optimizer)
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
    if cfg.train.ema is not None or cfg.train.swa is not None:
        from gradwise.train.averaging import SwaLR, WeightAveraging

        all_callbacks.append(WeightAveraging(model, ema=cfg.train.ema, swa=cfg.train.swa))
        if cfg.train.swa is not None:
            all_callbacks.append(SwaLR(cfg.train.swa, optimizer))
    if cfg.train.progress != "none":
        all_callbacks.append(ProgressBar(cfg.train.progress))
    all_callbacks.extend(callbacks)
    # what records and shows the run (steps.jsonl, report.html; TensorBoard, MLflow), each from its own package
    from gradwise.report import run_callbacks as report_callbacks
    from gradwise.track import run_callbacks as track_callbacks

    all_callbacks.extend(report_callbacks(cfg) + track_callbacks(cfg))
    if resume_state is not None and opened.lr_factor != 1.0:
        all_callbacks.append(_ScaleLR(opened.lr_factor))
    if resume_state is not None:
        from gradwise.train.checkpoint import load_weights_into

        # a checkpoint that does not fit the model is a one-line error here, before config.yaml is rewritten
        load_weights_into(model, resume_state, run_dir.last)

    run_dir.write_config(cfg.to_yaml())
    if bundle is not None and getattr(bundle, "preprocessor", None) is not None and run_dir.is_main:
        from gradwise.data.preprocess import LEGACY_PREPROCESS_FILE, PREPROCESS_FILE

        # data only (JSON): opening a run directory must never unpickle anything. A resumed older run's pickle is
        # superseded by the file written here, and removed so that no tool is tempted to open it.
        bundle.preprocessor.save(run_path / PREPROCESS_FILE)
        (run_path / LEGACY_PREPROCESS_FILE).unlink(missing_ok=True)
    if dist is not None:
        dist.wrap(model, cfg.seed)
    trainer = Trainer(model, train_loader, val_loader, test_loader, config=cfg, loss_fn=loss_fn,
                      optimizer=optimizer, schedule=schedule, run_dir=run_dir, task=task, device=device,
                      precision=precision, callbacks=all_callbacks, penalty=reg, augment=augment, forward=forward,
                      target_transform=target_transform, console=console, dist=dist)
    trainer.trained_by = "gradwise.fit" if bundle is None else "gradwise.train"
    from gradwise.train.trial import current as current_trial

    trial = current_trial()
    if trial is not None:  # a tuning trial: what it writes and evaluates (gradwise.train.trial)
        trainer.test_pass = trial.test
        # doctor.repair rolls back to checkpoints: a trial that repairs keeps a plain run's
        trainer.epoch_checkpoints = None if cfg.doctor.enabled and cfg.doctor.repair else trial.epoch_checkpoints()
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
    # another module (weight averaging's copy, evaluated in the model's place) runs uncompiled
    return lambda m, x: compiled(x) if m is model else m(x)


def _apply_transfer(cfg: RunConfig, model: nn.Module) -> None:
    from gradwise.models.hub import PUBLISHED, is_hub_name, load_published_weights

    if cfg.model.pretrained == PUBLISHED and is_hub_name(cfg.model.name) and not cfg.model.factory:
        # torchvision's/timm's published weights, asked of the library (its cache) when a run starts
        load_published_weights(model, cfg.model.name, cfg.model.options)
    elif cfg.model.pretrained:
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


# --------------------------------------------------------------------------- opening a run directory to write


@dataclass
class OpenedRun:
    """A run directory claimed for writing: locked, and for a resume its checkpoint read and the overrides checked."""

    path: Path
    lock: RunLock | None
    resumed: bool = False
    state: dict[str, Any] | None = None  # checkpoints/last.pt of a resumed run (None: start over)
    finished: dict[str, Any] | None = None  # summary.json of a completed run that is not trained again
    note: str | None = None  # why it is not trained again
    stored: RunConfig | None = None
    lr_factor: float = 1.0  # optim.lr override / stored optim.lr: the resumed schedule is scaled by it
    created: bool = False  # the run made the directory (so it may remove it again)
    dist: Any = None  # the process group of a data-parallel run (gradwise.train.distributed.Distributed)

    def abandon(self, exc: BaseException | None = None) -> None:
        """A new run that failed before its fit recorded anything: remove what it wrote (the directory was empty
        or cleared when claimed), so that the corrected command can run into the same directory."""
        if self.dist is not None and not self.dist.is_main:
            return
        if self.resumed or self.lock is None:
            return
        metrics = self.path / "metrics.jsonl"
        if (self.path / "checkpoints" / "last.pt").exists() or (metrics.exists() and metrics.stat().st_size):
            return  # it trained: keep what it recorded
        # a summary.json of a fit that failed at its first step is evidence (the doctor reads it); one of a fit that
        # refused its input at the start (an unknown early-stopping monitor, ...) records nothing worth keeping
        bad_input = isinstance(exc, ConfigError | DataError)
        if (self.path / "summary.json").exists() and not bad_input:
            return
        from gradwise.errors import GradwiseError
        from gradwise.train.rundir import LOCK_FILE, clear_run_dir

        with contextlib.suppress(OSError, GradwiseError):
            clear_run_dir(self.path)
            if self.created:
                (self.path / LOCK_FILE).unlink(missing_ok=True)
                self.path.rmdir()

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.dist is not None:
            self.dist.close()


@contextlib.contextmanager
def _claimed(opened: OpenedRun) -> Iterator[None]:
    """The set-up and fit in a claimed run directory: a stop names the directory, a failure before the fit recorded
    anything removes what it wrote, and the lock goes at the end whatever happens."""
    try:
        yield
    except Interrupted as exc:
        exc.run_dir = opened.path  # type: ignore[attr-defined]  # the CLI's message names it
        raise
    except Exception as exc:
        opened.abandon(exc)  # bad data, a model that cannot be built, ...: no half-made directory is left behind
        raise
    finally:
        opened.close()


def _distributed(cfg: RunConfig) -> Any:
    """The process group of a data-parallel run (train.strategy: ddp, or auto under torchrun), else None."""
    from gradwise.train.distributed import setup

    return setup(cfg.train.strategy, cfg.train.device, compile=cfg.train.compile,
                 unfreeze_after=cfg.model.unfreeze_after if cfg.model.freeze else None)


def _open_run(cfg: RunConfig, resume: str | Path | None, stored: RunConfig | None, overwrite: bool,
              dist: Any = None) -> OpenedRun:
    """Claim the run's directory before any heavy set-up, so that nothing later can leave it half-written.

    A new run: the directory must be new or empty (``overwrite`` clears a previous run's files), is locked, and its
    config.yaml is written at once (a run killed during start-up can be resumed). A resume: the directory is locked
    (a read-only one is refused here), its checkpoint read and the overrides checked against the stored config and
    the checkpoint -- all before anything is written.

    Data-parallel (``dist``): rank 0 does all this and sends what it found to the other processes (which may be on
    other machines, without the directory); an error there is raised on every process.
    """
    if dist is not None:
        from gradwise.train.distributed import open_on_main

        return open_on_main(dist, cfg, lambda: _open_run(cfg, resume, stored, overwrite, None),
                            lambda **kw: OpenedRun(lock=None, stored=stored, **kw))
    main = int(os.environ.get("RANK", 0)) == 0  # other ranks of a distributed run write nothing
    if resume is None:
        path = Path(cfg.out) if cfg.out else default_run_dir(cfg.name)
        created = not path.exists()
        for attempt in range(5):
            try:
                lock = claim_run_dir(path, overwrite=overwrite) if main else None
                break
            except (CheckpointError, ConfigError):
                # runs/<time>-<name> taken by a run started in the same second: the next free name, as
                # default_run_dir does for a directory that already exists
                if cfg.out or attempt == 4:
                    raise
                path = default_run_dir(cfg.name)
                created = not path.exists()
        cfg.out = str(path)
        try:
            if main:
                RunDir(path).write_config(cfg.to_yaml())
        except OSError as exc:
            if lock is not None:
                lock.release()
            from gradwise.train.rundir import unwritable

            raise unwritable(path, exc) from None
        return OpenedRun(path=path, lock=lock, created=created)
    assert stored is not None
    path = _resume_dir(resume)
    cfg.out = str(path)
    lock = RunLock(path).acquire() if main else None
    opened = OpenedRun(path=path, lock=lock, resumed=True, stored=stored)
    try:
        last = path / "checkpoints" / "last.pt"
        # the whole training state checked field by field before anything reads it: a foreign, cut-short or
        # damaged last.pt is one line naming the file, not a KeyError from the override checks
        opened.state = load_training_state(last) if last.exists() else None
        from gradwise.train.distributed import check_resume_world, world

        check_resume_world(opened.state, world(), last)  # mid-epoch: on as many processes as it was taken by
        opened.lr_factor = check_resume_overrides(stored, cfg, path, opened.state)
        opened.finished, opened.note = _completed(path, stored, cfg)
    except BaseException:
        opened.close()
        raise
    return opened


# keys a resume may change: how the run goes on, never what it is (README "Resuming a run"). Checked against the
# checkpoint as well: train.epochs (not below the epochs done), optim.lr (a number: the resumed schedule is scaled),
# train.batch_size and train.accumulate (at an epoch boundary only: a mid-epoch checkpoint counts the rows seen in
# steps of the old size).
RESUME_FREE = ("name", "out", "tune", "doctor", "data.num_workers", "train.progress", "train.log_every",
               "train.checkpoint_every", "train.eval_every", "train.threads", "train.device", "train.precision",
               "train.compile", "train.strategy", "train.clip_grad", "train.clip_mode",
               "train.early_stopping.enabled", "train.early_stopping.patience", "train.early_stopping.min_delta",
               "train.early_stopping.restore_best", "train.activation_checkpointing")
RESUME_CHECKED = ("train.epochs", "optim.lr", "train.batch_size", "train.accumulate")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "tune":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _free(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUME_FREE)


def check_resume_overrides(stored: RunConfig, cfg: RunConfig, run_dir: Path, state: dict[str, Any] | None) -> float:
    """Refuse (ConfigError) a resumed config that differs from the stored one where a resume cannot apply it.

    Returns the factor by which an ``optim.lr`` override scales the resumed schedule (1.0 without one). A run
    stopped before its first checkpoint starts over, so every override applies to it (nothing to be consistent with).
    """
    if state is None:
        return 1.0
    old, new = _flat(stored.to_dict()), _flat(cfg.to_dict())
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k) and not _free(k)]
    done = int(state["epoch"]) if state is not None else 0
    mid_epoch = state is not None and int(state.get("batch_in_epoch", 0)) > 0
    lr_factor = 1.0
    refused: list[tuple[str, str]] = []
    for key in changed:
        was, now = old.get(key), new.get(key)
        if key == "train.epochs":
            least = done + 1 if mid_epoch else done  # a run stopped inside an epoch finishes that epoch
            if isinstance(now, int) and now < least:
                trained = f"{done} epoch(s)" + (f" and part of epoch {done + 1}" if mid_epoch else "")
                refused.append((key, f"this run has already trained {trained}; give train.epochs >= {least}"))
            continue
        if key == "optim.lr":
            if isinstance(now, int | float) and isinstance(was, int | float) and was > 0:
                lr_factor = float(now) / float(was)
                continue
            refused.append((key, "a resumed run takes a number (the LR finder is for a new run)"))
            continue
        if key in ("train.batch_size", "train.accumulate"):
            if now == "auto":
                refused.append((key, "a resumed run takes a number (auto is chosen when a run starts)"))
            elif mid_epoch:
                refused.append((key, f"the checkpoint is in the middle of epoch {done + 1}, whose rows it counts in "
                                     "steps of the old size; resume without it, and change it once the run is stopped "
                                     "at an epoch boundary"))
            continue
        section = key.split(".")[0]
        why = {"model": "the checkpoint holds a model built with the stored value",
               "data": "the checkpoint was trained on the data (and splits) the stored value gives",
               "loss": "the checkpoint was trained on the stored loss",
               "seed": "the data order and random numbers of the run come from the stored seed",
               "optim": "the checkpoint holds the state of the stored optimizer (only optim.lr may change)",
               "schedule": "the checkpoint holds the state of the stored LR schedule",
               }.get(section, "the checkpoint's state depends on the stored value")
        refused.append((key, why))
    if refused:
        key, why = refused[0]
        more = f" (also: {', '.join(k for k, _ in refused[1:])})" if len(refused) > 1 else ""
        fine_tune = (f" To train these weights further with another model or data, start a new run with "
                     f"model.pretrained={run_dir}/checkpoints/best.pt.") if key.split(".")[0] in ("model", "data",
                                                                                           "loss") else ""
        raise ConfigError(f"--resume '{run_dir}': {key} = {echo(new.get(key))} cannot be applied to this run (it was "
                          f"{echo(old.get(key))}): {why}{more}. Resume without this override, or start a new run "
                          f"with it (e.g. `gradwise train {run_dir}/config.yaml {key}=... --out NEW_DIR`)."
                          f"{fine_tune} A resume accepts train.epochs, optim.lr, train.batch_size/accumulate at an "
                          "epoch boundary, and how the run is shown or computed (train.progress, threads, device, "
                          "checkpoint_every, early_stopping patience, doctor.*).")
    return lr_factor


def _completed(path: Path, stored: RunConfig, cfg: RunConfig) -> tuple[dict[str, Any] | None, str | None]:
    """summary.json of a completed run that this resume does not train further, and why (else (None, None)).

    A completed run is trained on only when ``train.epochs`` gives more epochs than it trained and it ran all it
    had planned: one that stopped early (early stopping, a pruner) is over, as it would be uninterrupted.
    """
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return None, None  # no (readable) summary: not known to be completed; the resume goes on from last.pt
    if not isinstance(summary, dict) or summary.get("status") != "completed":
        return None, None
    done = summary.get("epochs_completed")
    if not isinstance(done, int):
        return None, None
    planned = stored.train.epochs
    stopped_early = done < planned
    if not stopped_early and cfg.train.epochs > done:
        return None, None  # extended: trains on
    if stopped_early:
        reason = summary.get("stop_reason") or "it stopped early"
        note = (f"run '{path}' is completed: it stopped after {done} of {planned} epochs ({reason}), so it is not "
                f"trained again. To train its weights further, start a new run with "
                f"model.pretrained={path}/checkpoints/best.pt.")
    else:
        note = (f"run '{path}' is completed ({done} epochs): nothing to train. Give more epochs to continue it, "
                f"e.g. `gradwise train --resume {path} train.epochs={done * 2}`.")
    return summary, note


def _finished_run(opened: OpenedRun, cfg: RunConfig, model: nn.Module, bundle: Any = None) -> Run:
    """The Run of a completed run as it ended: weights put back, its files read, nothing rewritten.

    Only an older run's pickled preprocessing is replaced by preprocess.json (the way on the README gives for runs
    written by older versions); summary.json, metrics and checkpoints stay as they are.
    """
    from gradwise.doctor import Finding
    from gradwise.train.checkpoint import load_weights_into

    summary = opened.finished or {}
    path = opened.path
    which = path / "checkpoints" / ("best.pt" if summary.get("restored_epoch") is not None else "last.pt")
    if not which.exists():
        which = path / "checkpoints" / "last.pt"
    load_weights_into(model, load_checkpoint(which), which)
    model.eval()
    if bundle is not None and getattr(bundle, "preprocessor", None) is not None:
        from gradwise.data.preprocess import LEGACY_PREPROCESS_FILE, PREPROCESS_FILE

        if (path / LEGACY_PREPROCESS_FILE).exists() or not (path / PREPROCESS_FILE).exists():
            bundle.preprocessor.save(path / PREPROCESS_FILE)
            (path / LEGACY_PREPROCESS_FILE).unlink(missing_ok=True)
    findings = []
    for row in read_jsonl(path / "findings.jsonl"):
        with contextlib.suppress(Exception):  # a damaged line is not worth failing a finished run's summary
            findings.append(Finding.from_dict(row))
    config = opened.stored or cfg
    config.out = str(path)
    return Run(model=model, history=read_jsonl(path / "metrics.jsonl"), findings=findings, summary=summary,
               dir=path, config=config, extras={"bundle": bundle, "already_completed": opened.note})


def _forget_unsaved_progress(run_dir: RunDir) -> None:
    """A resumed run with no checkpoint starts over: drop what the stopped attempt appended (rows, findings)."""
    for name in ("metrics.jsonl", "findings.jsonl", "summary.json"):
        (run_dir.path / name).unlink(missing_ok=True)
    run_dir.best.unlink(missing_ok=True)


class _ScaleLR(Callback):
    """An optim.lr override on a resume: the restored schedule goes on at new/old times its LRs."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def on_fit_start(self, trainer: Any) -> None:
        if trainer.resumed:
            trainer.schedule.scale_lr(self.factor)


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


def _loaders(cfg: RunConfig, train: Any, val: Any, test: Any, model: nn.Module | None = None) -> tuple[Any, Any, Any]:
    from gradwise.data.loaders import make_loader

    if train is None:
        raise DataError("fit() needs training data: pass a Dataset, a DataLoader or an (X, y) pair.")
    from gradwise.train.batch_size import REFERENCE_BATCH

    # 'auto': the loaders are built before the model is on its device; _auto_batch resizes the training one later
    bs = cfg.train.batch_size if cfg.train.batch_size != "auto" else REFERENCE_BATCH
    # a model that starts with an embedding takes integer ids: (X, y) pairs keep them int64 instead of float
    first = next((m for m in model.modules() if next(m.parameters(recurse=False), None) is not None), None) \
        if model is not None else None
    common = {"seed": cfg.seed, "num_workers": cfg.data.num_workers,
              "ids": isinstance(first, nn.Embedding | nn.EmbeddingBag)}
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
    from gradwise.data.text import vocab_size_of
    from gradwise.models import build_model
    from gradwise.recipes import build_loss

    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    seed_everything(cfg.seed)
    bundle = load_data(cfg.data, cfg.seed, loss=cfg.loss.name)
    model = build_model(cfg.model, bundle.input_shape, bundle.n_outputs, bundle.task,
                        vocab_size=vocab_size_of(bundle.preprocessor))
    _apply_transfer(cfg, model)
    train_loader, _, _ = make_loaders_from_bundle(bundle, cfg)
    device = resolve_device(cfg.train.device)
    loss_fn = build_loss(cfg.loss, bundle.task, bundle.n_outputs, bundle.class_counts)
    return cfg, model, loss_fn, train_loader, device
