"""Recipes against their torch references: optimizers, schedules, losses, penalties and the LR finder."""

from __future__ import annotations

import copy
import io
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler as lrs

from gradwise.config import LossConfig, OptimConfig, ScheduleConfig
from gradwise.errors import CheckpointError, ConfigError, ModelError
from gradwise.recipes import (
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    Schedule,
    build_loss,
    build_optimizer,
    build_scheduler,
    lr_find,
    penalty,
)
from gradwise.recipes.schedules import WarmupDecay, _suggest, warmup_steps

pytestmark = pytest.mark.usefixtures("single_thread")


def make_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.LayerNorm(8),
                         nn.Linear(8, 3))


def assert_same_tensors(a: Any, b: Any) -> None:
    """Recursive bitwise equality of nested dicts/lists/tensors/primitives (state dicts)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_tensors(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tensors(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


# --------------------------------------------------------------------------------------------- optimizers

REFERENCE_KWARGS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.9, "nesterov": True},
    "adam": {"betas": (0.8, 0.99), "eps": 1e-7},
    "adamw": {"betas": (0.8, 0.99), "eps": 1e-7},
    "rmsprop": {"momentum": 0.9, "eps": 1e-7},
    "adagrad": {"eps": 1e-7},
    "adamax": {"betas": (0.8, 0.99), "eps": 1e-7},
    "nadam": {"betas": (0.8, 0.99), "eps": 1e-7},
    "radam": {"betas": (0.8, 0.99), "eps": 1e-7},
}


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adagrad"])
def test_fused_kernels_agree_with_the_per_tensor_loop(name: str) -> None:
    # the default picks torch's fused kernel; it computes the same update as the plain loop up to rounding.
    # (No BatchNorm right after a Linear here: that bias gets a gradient of pure rounding noise, which Adam's
    # m/sqrt(v) amplifies to a full-size step, so any two implementations disagree on it.)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    ref = copy.deepcopy(model)
    opt = build_optimizer(model, OptimConfig(name=name, lr=0.01))
    plain = build_optimizer(ref, OptimConfig(name=name, lr=0.01, fused=False))
    assert opt.defaults["fused"] is True and not plain.defaults.get("fused")
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(5):
        for m, o in ((model, opt), (ref, plain)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_fused_true_without_a_kernel_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no fused 'rmsprop' kernel"):
        build_optimizer(make_model(), OptimConfig(name="rmsprop", fused=True))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_hand_built_torch(name: str) -> None:
    torch.manual_seed(0)
    model = make_model()
    ref = copy.deepcopy(model)
    cfg = OptimConfig(name=name, lr=0.01, weight_decay=0.05, momentum=0.9, nesterov=name == "sgd",
                      betas=(0.8, 0.99), eps=1e-7)
    opt = build_optimizer(model, cfg)
    assert type(opt) is OPTIMIZERS[name]
    # by hand: matrices decay, biases and BatchNorm/LayerNorm parameters do not
    decay = [p for p in ref.parameters() if p.ndim > 1]
    no_decay = [p for p in ref.parameters() if p.ndim <= 1]
    fused = {"fused": True} if name in ("sgd", "adam", "adamw", "adagrad") else {}  # chosen on CPU by default
    assert opt.defaults.get("fused") is (True if fused else opt.defaults.get("fused"))
    ref_opt = OPTIMIZERS[name]([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                               lr=0.01, **REFERENCE_KWARGS[name], **fused)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(5):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert not torch.equal(model[0].weight, make_model()[0].weight)  # it did train


def test_no_decay_groups_and_decay_norm_and_bias() -> None:
    model = make_model()
    opt = build_optimizer(model, OptimConfig(name="adamw", lr=1e-3, weight_decay=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    wd = {names[id(p)]: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert len(wd) == len(names)  # every parameter, once
    assert wd == {"0.weight": 0.1, "0.bias": 0.0, "1.weight": 0.0, "1.bias": 0.0, "3.weight": 0.1, "3.bias": 0.0,
                  "4.weight": 0.0, "4.bias": 0.0, "5.weight": 0.1, "5.bias": 0.0}
    opt = build_optimizer(model, OptimConfig(name="adamw", lr=1e-3, weight_decay=0.1, decay_norm_and_bias=True))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1]


def test_lr_override_auto_and_lr_scale_groups() -> None:
    model = make_model()
    with pytest.raises(ConfigError, match="optim.lr = 'auto'"):
        build_optimizer(model, OptimConfig(lr="auto"))
    opt = build_optimizer(model, OptimConfig(name="sgd", lr="auto", weight_decay=0.01), lr=0.2,
                          groups=[{"params": ["0", "1.*"], "lr_scale": 0.1}, {"params": ["5.weight"], "lr_scale": 2}])
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    assert lr_of["0.weight"] == (pytest.approx(0.02), 0.01) and lr_of["0.bias"] == (pytest.approx(0.02), 0.0)
    assert lr_of["1.weight"][0] == pytest.approx(0.02) and lr_of["1.bias"][0] == pytest.approx(0.02)
    assert lr_of["5.weight"] == (pytest.approx(0.4), 0.01) and lr_of["5.bias"] == (0.2, 0.0)
    assert lr_of["3.weight"] == (0.2, 0.01)
    assert opt.param_groups[0]["lr"] == 0.2  # unscaled parameters come first: group 0 carries the base LR
    with pytest.raises(ConfigError, match="Did you mean '3.weight'"):
        build_optimizer(model, OptimConfig(), groups=[{"params": ["3.weigth"], "lr_scale": 0.5}])


def test_frozen_parameters_are_included_and_train_after_unfreezing() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(model, OptimConfig(name="adam", lr=0.1))
    assert sum(len(g["params"]) for g in opt.param_groups) == 4
    before = model[0].weight.detach().clone()
    x = torch.randn(8, 4)
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    assert torch.equal(model[0].weight, before)
    model[0].weight.requires_grad_(True)
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    assert not torch.equal(model[0].weight, before)


def test_optimizer_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"optim.name = 'adamm' is not a known optimizer.*Did you mean 'adam'"):
        build_optimizer(make_model(), OptimConfig(name="adamm"))
    with pytest.raises(ConfigError, match="nesterov"):
        build_optimizer(make_model(), OptimConfig(name="sgd", momentum=0.0, nesterov=True))
    assert isinstance(build_optimizer(make_model(), OptimConfig(name=" AdamW ")), torch.optim.AdamW)


# --------------------------------------------------------------------------------------------- schedules

SPE, EPOCHS, PEAK = 7, 6, 0.1
TOTAL = SPE * EPOCHS
VAL_LOSSES = [1.0, 0.8, 0.8, 0.8, 0.8, 0.8]


def _two_group_optimizer(name: str = "sgd") -> torch.optim.Optimizer:
    """Two groups with different LRs (base and ×0.1): schedules must scale both."""
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    return build_optimizer(model, OptimConfig(name=name, lr=PEAK, momentum=0.9),
                           groups=[{"params": ["1"], "lr_scale": 0.1}])


def _trajectory(opt: torch.optim.Optimizer, step_batch: Callable[[], None],
                step_epoch: Callable[[int], None], epochs: int = EPOCHS) -> list[list[float]]:
    """LRs of every group used by every optimizer step of a full run, driven like the training loop."""
    out = []
    for epoch in range(epochs):
        for _ in range(SPE):
            out.append([g["lr"] for g in opt.param_groups])
            opt.step()
            step_batch()
        step_epoch(epoch)
    return out


def _ours(name: str, cfg: ScheduleConfig) -> list[list[float]]:
    opt = _two_group_optimizer()
    sched = build_scheduler(opt, cfg, SPE, EPOCHS)
    assert sched.name == name and sched.per_batch == (name in {"cosine", "warmup_cosine", "warmup_linear",
                                                               "one_cycle"})
    return _trajectory(opt, sched.step_batch, lambda e: sched.step_epoch({"val_loss": VAL_LOSSES[e]}))


def _reference(name: str, cfg: ScheduleConfig) -> list[list[float]]:
    """The same run with torch schedulers built by hand, one single-group optimizer per group LR."""
    trajectories = []
    for lr in (PEAK, PEAK * 0.1):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)
        w = warmup_steps(cfg.warmup, TOTAL)
        per_batch = True
        if name == "constant":
            s: Any = lrs.ConstantLR(opt, factor=1.0, total_iters=0)
        elif name == "step":
            s, per_batch = lrs.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma), False
        elif name == "multistep":
            s, per_batch = lrs.MultiStepLR(opt, milestones=cfg.milestones, gamma=cfg.gamma), False
        elif name == "exponential":
            s, per_batch = lrs.ExponentialLR(opt, gamma=cfg.gamma), False
        elif name == "cosine":
            s = lrs.CosineAnnealingLR(opt, T_max=TOTAL, eta_min=cfg.min_lr * lr)
        elif name == "warmup_cosine":
            s = lrs.SequentialLR(opt, [lrs.LinearLR(opt, start_factor=1 / (w + 1), end_factor=1.0, total_iters=w),
                                       lrs.CosineAnnealingLR(opt, T_max=TOTAL - w, eta_min=cfg.min_lr * lr)], [w])
        elif name == "warmup_linear":
            s = lrs.SequentialLR(opt, [lrs.LinearLR(opt, start_factor=1 / (w + 1), end_factor=1.0, total_iters=w),
                                       lrs.LinearLR(opt, 1.0, cfg.min_lr, total_iters=TOTAL - w)], [w])
        elif name == "one_cycle":
            s = lrs.OneCycleLR(opt, max_lr=lr, total_steps=TOTAL)
        else:
            s, per_batch = lrs.ReduceLROnPlateau(opt, factor=cfg.gamma, patience=cfg.patience,
                                                 min_lr=cfg.min_lr * lr), False
        if isinstance(s, lrs.ReduceLROnPlateau):
            traj = _trajectory(opt, lambda: None, lambda e, s=s: s.step(VAL_LOSSES[e]))
        elif per_batch:
            traj = _trajectory(opt, s.step, lambda e: None)
        else:
            traj = _trajectory(opt, lambda: None, lambda e, s=s: s.step())
        trajectories.append([t[0] for t in traj])
    return [list(pair) for pair in zip(*trajectories, strict=True)]


SCHEDULE_CFGS = {
    "constant": ScheduleConfig(name="constant"),
    "step": ScheduleConfig(name="step", step_size=2, gamma=0.5),
    "multistep": ScheduleConfig(name="multistep", milestones=[1, 4], gamma=0.3),
    "exponential": ScheduleConfig(name="exponential", gamma=0.8),
    "cosine": ScheduleConfig(name="cosine", min_lr=0.1),
    "warmup_cosine": ScheduleConfig(name="warmup_cosine", warmup=0.2, min_lr=0.05),
    "warmup_linear": ScheduleConfig(name="warmup_linear", warmup=5, min_lr=0.1),
    "one_cycle": ScheduleConfig(name="one_cycle"),
    "reduce_on_plateau": ScheduleConfig(name="reduce_on_plateau", gamma=0.5, patience=1, min_lr=0.2),
}


def test_every_schedule_name_has_a_test_config() -> None:
    assert set(SCHEDULE_CFGS) == set(SCHEDULES)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_torch_reference(name: str) -> None:
    cfg = SCHEDULE_CFGS[name]
    ours, ref = _ours(name, cfg), _reference(name, cfg)
    assert len(ours) == TOTAL
    np.testing.assert_allclose(np.array(ours), np.array(ref), rtol=1e-12, atol=0)
    # per-group LRs keep their ratio throughout
    np.testing.assert_allclose(np.array(ours)[:, 1], np.array(ours)[:, 0] * 0.1, rtol=1e-12)


def test_warmup_cosine_closed_form() -> None:
    cfg = ScheduleConfig(name="warmup_cosine", warmup=0.1, min_lr=0.1)
    w = round(0.1 * TOTAL)
    expected = []
    for s in range(TOTAL):
        if s < w:
            f = (s + 1) / (w + 1)
        else:
            f = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - w) / (TOTAL - w)))
        expected.append(PEAK * f)
    ours = [lrs_[0] for lrs_ in _ours("warmup_cosine", cfg)]
    np.testing.assert_allclose(ours, expected, rtol=1e-14)
    assert ours[0] < PEAK / w and max(ours) == pytest.approx(PEAK)
    # stepping past the end holds the floor instead of climbing back
    assert WarmupDecay(total=10, warmup=2, min_factor=0.1)(15) == pytest.approx(0.1)


def test_warmup_steps_fraction_or_count() -> None:
    assert warmup_steps(0.1, 200) == 20
    assert warmup_steps(5, 200) == 5
    assert warmup_steps(0, 200) == 0
    assert warmup_steps(500, 200) == 200


def test_reduce_on_plateau_cuts_after_patience_and_falls_back_to_train_loss() -> None:
    opt = _two_group_optimizer()
    sched = build_scheduler(opt, ScheduleConfig(name="reduce_on_plateau", gamma=0.5, patience=2), 10, 20)
    sched.step_epoch({"train_loss": 1.0})
    for _ in range(2):  # two bad epochs = patience: no cut yet
        sched.step_epoch({"train_loss": 1.0})
        assert sched.lr == PEAK
    sched.step_epoch({"train_loss": 1.0})  # the third bad epoch cuts
    assert sched.lr == pytest.approx(PEAK * 0.5)
    assert sched.lrs[1] == pytest.approx(PEAK * 0.05)
    with pytest.raises(ConfigError, match="val_loss"):
        sched.step_epoch({"accuracy": 0.5})


def test_reduce_on_plateau_prefers_val_loss_and_skips_epochs_without_it() -> None:
    opt = _two_group_optimizer()
    sched = build_scheduler(opt, ScheduleConfig(name="reduce_on_plateau", gamma=0.5, patience=0), 10, 20)
    sched.step_epoch({"train_loss": 0.1, "val_loss": 1.0})
    sched.step_epoch({"train_loss": 0.05})  # no val this epoch: skipped, not compared on train loss
    assert sched.lr == PEAK
    sched.step_epoch({"train_loss": 0.05, "val_loss": 1.5})
    assert sched.lr == pytest.approx(PEAK * 0.5)


def test_one_cycle_does_not_raise_when_stepped_past_the_end() -> None:
    opt = _two_group_optimizer()
    sched = build_scheduler(opt, ScheduleConfig(name="one_cycle"), 5, 2)
    for _ in range(13):
        opt.step()
        sched.step_batch()
    assert math.isfinite(sched.lr)


def test_one_cycle_with_adagrad_does_not_cycle_momentum() -> None:
    opt = _two_group_optimizer("adagrad")
    sched = build_scheduler(opt, ScheduleConfig(name="one_cycle"), 5, 2)
    assert sched.scheduler.cycle_momentum is False


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_state_survives_weights_only_checkpoint(name: str) -> None:
    cfg = SCHEDULE_CFGS[name]
    full = _ours(name, cfg)
    half = EPOCHS // 2
    opt = _two_group_optimizer()
    sched = build_scheduler(opt, cfg, SPE, EPOCHS)
    first = _trajectory(opt, sched.step_batch, lambda e: sched.step_epoch({"val_loss": VAL_LOSSES[e]}), half)
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "schedule": sched.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    # resume: build both, then load optimizer state, then schedule state
    opt2 = _two_group_optimizer()
    sched2 = build_scheduler(opt2, cfg, SPE, EPOCHS)
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["schedule"])
    second = _trajectory(opt2, sched2.step_batch,
                         lambda e: sched2.step_epoch({"val_loss": VAL_LOSSES[e + half]}), EPOCHS - half)
    np.testing.assert_allclose(np.array(first + second), np.array(full), rtol=1e-15)
    assert isinstance(sched2, Schedule) and sched2.lr == opt2.param_groups[0]["lr"]


@pytest.mark.parametrize("caller_prescaled", [False, True])
@pytest.mark.parametrize("name", SCHEDULES)
def test_scale_lr_mid_run_equals_a_run_at_the_lower_peak(name: str, caller_prescaled: bool) -> None:
    """After scale_lr(f), the rest of the run is the schedule of a peak LR f times lower (doctor repair)."""
    cfg, k, f = SCHEDULE_CFGS[name], 2, 0.1
    lower = _two_group_optimizer()
    for g in lower.param_groups:
        g["lr"] *= f
    low_sched = build_scheduler(lower, cfg, SPE, EPOCHS)
    expected = _trajectory(lower, low_sched.step_batch, lambda e: low_sched.step_epoch({"val_loss": VAL_LOSSES[e]}))
    opt = _two_group_optimizer()
    sched = build_scheduler(opt, cfg, SPE, EPOCHS)
    _trajectory(opt, sched.step_batch, lambda e: sched.step_epoch({"val_loss": VAL_LOSSES[e]}), k)
    if caller_prescaled:  # what the training loop's rollback does before calling scale_lr
        for g in opt.param_groups:
            g["lr"] *= f
            if "initial_lr" in g:
                g["initial_lr"] *= f
    sched.scale_lr(f)
    rest = _trajectory(opt, sched.step_batch, lambda e: sched.step_epoch({"val_loss": VAL_LOSSES[e + k]}),
                       EPOCHS - k)
    np.testing.assert_allclose(np.array(rest), np.array(expected[k * SPE:]), rtol=1e-12)


def test_schedule_errors() -> None:
    opt = _two_group_optimizer()
    with pytest.raises(ConfigError, match=r"schedule.name = 'cosin'.*Did you mean 'cosine'"):
        build_scheduler(opt, ScheduleConfig(name="cosin"), 10, 2)
    with pytest.raises(ConfigError, match="gamma"):
        build_scheduler(opt, ScheduleConfig(name="reduce_on_plateau", gamma=2.0), 10, 2)
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        build_scheduler(opt, ScheduleConfig(name="cosine"), 0, 2)
    sched = build_scheduler(opt, ScheduleConfig(name="cosine"), 10, 2)
    other = build_scheduler(_two_group_optimizer(), ScheduleConfig(name="step"), 10, 2)
    with pytest.raises(CheckpointError, match="cosine"):
        other.load_state_dict(sched.state_dict())


# --------------------------------------------------------------------------------------------- losses


def test_every_loss_name_matches_torch_functional() -> None:
    g = torch.Generator().manual_seed(0)
    n, c = 32, 4
    logits = torch.randn(n, c, generator=g)
    labels = torch.randint(0, c, (n,), generator=g)
    out1 = torch.randn(n, 1, generator=g)
    y_reg = torch.randn(n, generator=g)
    y_bin = torch.randint(0, 2, (n,), generator=g)
    y_multi = torch.randint(0, 2, (n, c), generator=g).float()
    counts = [10, 30, 50, 10]
    balanced = torch.tensor([100 / (4 * k) for k in counts])  # n / (C · count)

    def loss(name: str, task: str, n_out: int, **kw: Any) -> Any:
        fn = build_loss(LossConfig(name=name, **kw), task, n_out, class_counts=counts)
        return fn

    checks = {
        "auto": (loss("auto", "classification", c), (logits, labels), F.cross_entropy(logits, labels)),
        "mse": (loss("mse", "regression", 1), (out1, y_reg), F.mse_loss(out1[:, 0], y_reg)),
        "mae": (loss("mae", "regression", 1), (out1, y_reg), F.l1_loss(out1[:, 0], y_reg)),
        "huber": (loss("huber", "regression", 1, huber_delta=0.3), (out1, y_reg),
                  F.huber_loss(out1[:, 0], y_reg, delta=0.3)),
        "cross_entropy": (loss("cross_entropy", "classification", c, label_smoothing=0.1, class_weights="balanced"),
                          (logits, labels), F.cross_entropy(logits, labels, weight=balanced, label_smoothing=0.1)),
        "bce_with_logits": (loss("bce_with_logits", "binary", 1), (out1, y_bin),
                            F.binary_cross_entropy_with_logits(out1[:, 0], y_bin.float())),
        "nll": (loss("nll", "classification", c, class_weights=[1.0, 2.0, 0.5, 1.0]),
                (F.log_softmax(logits, 1), labels),
                F.nll_loss(F.log_softmax(logits, 1), labels, weight=torch.tensor([1.0, 2.0, 0.5, 1.0]))),
        "hinge": (loss("hinge", "classification", c), (logits, labels), F.multi_margin_loss(logits, labels)),
    }
    assert set(checks) == set(LOSSES)
    for name, (fn, args, expected) in checks.items():
        torch.testing.assert_close(fn(*args), expected, rtol=1e-6, atol=1e-7, msg=name)
        assert fn.name == ("cross_entropy" if name == "auto" else name)
    multi = loss("bce_with_logits", "multilabel", c)
    torch.testing.assert_close(multi(logits, y_multi), F.binary_cross_entropy_with_logits(logits, y_multi))
    hinge_w = loss("hinge", "classification", c, class_weights="balanced")
    torch.testing.assert_close(hinge_w(logits, labels), F.multi_margin_loss(logits, labels, weight=balanced))


def test_auto_loss_choice() -> None:
    assert build_loss(LossConfig(), "regression", 1).name == "mse"
    assert build_loss(LossConfig(), "classification", 5).name == "cross_entropy"
    assert build_loss(LossConfig(), "classification", 1).name == "bce_with_logits"
    assert build_loss(LossConfig(), "multilabel", 5).name == "bce_with_logits"
    assert build_loss(LossConfig(name="L1"), "regression", 1).name == "mae"


def test_balanced_class_weights_formula() -> None:
    fn = build_loss(LossConfig(name="cross_entropy", class_weights="balanced"), "classification", 3, [5, 15, 80])
    torch.testing.assert_close(fn.weight, torch.tensor([100 / 15, 100 / 45, 100 / 240]))


def test_binary_class_weights_and_label_smoothing() -> None:
    g = torch.Generator().manual_seed(1)
    out, y = torch.randn(20, 1, generator=g), torch.randint(0, 2, (20,), generator=g)
    fn = build_loss(LossConfig(name="bce_with_logits", class_weights="balanced", label_smoothing=0.2), "binary", 1,
                    class_counts=[15, 5])
    w = torch.where(y == 1, 20 / 10, 20 / 30).float()
    expected = F.binary_cross_entropy_with_logits(out[:, 0], y.float() * 0.8 + 0.1, weight=w)
    torch.testing.assert_close(fn(out, y), expected)


def test_regression_shapes_do_not_broadcast() -> None:
    out = torch.randn(8, 1)
    y = torch.randn(8)
    fn = build_loss(LossConfig(name="mse"), "regression", 1)
    right = ((out[:, 0] - y) ** 2).mean()
    torch.testing.assert_close(fn(out, y), right)
    torch.testing.assert_close(fn(out, y[:, None]), right)
    torch.testing.assert_close(fn(out[:, 0], y[:, None]), right)
    torch.testing.assert_close(fn(out, y.double()), right)  # float64 targets from numpy
    with pytest.warns(UserWarning):  # what a bare torch loss would silently do: an (8, 8) grid
        assert not torch.allclose(nn.MSELoss()(out, y), right)
    with pytest.raises(ModelError, match=r"\(8, 3\).*\(8,\)"):
        fn(torch.randn(8, 3), y)
    bce = build_loss(LossConfig(name="bce_with_logits"), "binary", 1)
    with pytest.raises(ModelError):
        bce(torch.randn(8, 2), torch.randint(0, 2, (8,)))


def test_cross_entropy_fast_path_still_explains_mismatches() -> None:
    ce = build_loss(LossConfig(name="cross_entropy"), "classification", 3)
    out, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    torch.testing.assert_close(ce(out, y), F.cross_entropy(out, y))
    # a batch-size mismatch reaches torch's check first; the user still gets gradwise's message, not torch's
    with pytest.raises(ModelError, match=r"class indices of shape \(8,\).*\(5,\)"):
        ce(out, y[:5])


def test_classification_target_forms() -> None:
    logits, labels = torch.randn(8, 3), torch.randint(0, 3, (8,))
    fn = build_loss(LossConfig(name="cross_entropy"), "classification", 3)
    expected = F.cross_entropy(logits, labels)
    torch.testing.assert_close(fn(logits, labels[:, None]), expected)  # (N, 1) labels
    torch.testing.assert_close(fn(logits, labels.float()), expected)  # float labels from numpy
    soft = F.one_hot(labels, 3).float()
    torch.testing.assert_close(fn(logits, soft), expected)  # class probabilities


def test_loss_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"loss.name = 'cross_entropyy'.*Did you mean 'cross_entropy'"):
        build_loss(LossConfig(name="cross_entropyy"), "classification", 3)
    with pytest.raises(ConfigError, match="regression"):
        build_loss(LossConfig(name="cross_entropy"), "regression", 1)
    with pytest.raises(ConfigError, match="regression loss"):
        build_loss(LossConfig(name="mse"), "classification", 3)
    with pytest.raises(ConfigError, match="class counts"):
        build_loss(LossConfig(name="cross_entropy", class_weights="balanced"), "classification", 3)
    with pytest.raises(ConfigError, match="one weight per class"):
        build_loss(LossConfig(name="cross_entropy", class_weights=[1.0, 2.0]), "classification", 3)
    with pytest.raises(ConfigError, match="bce_with_logits"):
        build_loss(LossConfig(name="cross_entropy"), "classification", 1)
    with pytest.raises(ConfigError, match="label_smoothing"):
        build_loss(LossConfig(name="huber", label_smoothing=0.1), "regression", 1)
    with pytest.raises(ConfigError, match="task"):
        build_loss(LossConfig(), "segmentation", 3)


# --------------------------------------------------------------------------------------------- penalty


def test_penalty_gradients_l1_and_l2() -> None:
    torch.manual_seed(0)
    model = make_model()
    assert penalty(model, 0.0, 0.0) is None
    weights = {"0.weight", "3.weight", "5.weight"}
    pen = penalty(model, 0.01, 0.0)
    assert pen is not None
    pen.backward()
    for n, p in model.named_parameters():
        if n in weights:
            torch.testing.assert_close(p.grad, 0.01 * torch.sign(p.detach()), rtol=0, atol=0)
        else:
            assert p.grad is None  # biases and norm parameters are not penalized
    model.zero_grad()
    pen = penalty(model, 0.0, 0.03)
    assert pen is not None
    pen.backward()
    for n, p in model.named_parameters():
        if n in weights:  # documented convention: ½·λ·Σw², gradient λ·w
            torch.testing.assert_close(p.grad, 0.03 * p.detach(), rtol=1e-6, atol=0)
    value = penalty(model, 0.01, 0.03)
    ws = [p.detach() for n, p in model.named_parameters() if n in weights]
    expected = 0.01 * sum(w.abs().sum() for w in ws) + 0.5 * 0.03 * sum((w**2).sum() for w in ws)
    torch.testing.assert_close(value, expected)


# --------------------------------------------------------------------------------------------- lr finder


def _digits_setup() -> tuple[nn.Module, torch.optim.Optimizer, torch.utils.data.DataLoader]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    ds = torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    opt = build_optimizer(model, OptimConfig(name="adamw", lr=1e-3))
    # one real step first, so the optimizer has state (moments, step counts) to be restored
    xb, yb = next(iter(loader))
    F.cross_entropy(model(xb), yb).backward()
    opt.step()
    opt.zero_grad()
    return model, opt, loader


def test_lr_find_on_digits_suggests_and_restores_everything(tmp_path: Any) -> None:
    model, opt, loader = _digits_setup()
    model.eval()
    model_before = copy.deepcopy(model.state_dict())
    opt_before = copy.deepcopy(opt.state_dict())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    rng_before = torch.get_rng_state()
    np_before = np.random.get_state()
    py_before = random.getstate()

    def noisy_forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # consumes the numpy and python RNGs too (like an augmentation would), so their restore is tested
        return m(x + 1e-3 * float(np.random.randn()) * random.random())

    result = lr_find(model, nn.CrossEntropyLoss(), loader, opt, steps=100, forward=noisy_forward)

    assert result.suggestion is not None and 1e-5 < result.suggestion < 1
    assert result.valley is not None and 1e-5 < result.valley < 1
    assert result.minimum is not None and result.suggestion < result.minimum < 10
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses) > 20
    assert all(math.isfinite(v) for v in result.losses)
    png = result.plot(tmp_path / "lr_find.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert_same_tensors(model.state_dict(), model_before)
    assert_same_tensors(opt.state_dict(), opt_before)
    assert torch.equal(torch.get_rng_state(), rng_before)
    np_after = np.random.get_state()
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1]) and np_after[2:] == np_before[2:]
    assert random.getstate() == py_before
    assert not model.training  # eval mode restored
    assert all(p.grad is None for p in model.parameters())


def test_lr_find_is_nan_safe_when_the_loss_blows_up() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x = torch.randn(64, 4) * 100
    y = x.sum(1, keepdim=True)
    loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    opt = build_optimizer(model, OptimConfig(name="sgd", lr=1e-3, momentum=0.0, weight_decay=0.0))
    before = copy.deepcopy(model.state_dict())
    # no divergence stop: run until the loss itself is inf/NaN
    result = lr_find(model, nn.MSELoss(), loader, opt, start_lr=1e-6, end_lr=1e6, steps=60, diverge=math.inf)
    assert result.stopped_early and "non-finite" in result.reason
    assert not math.isfinite(result.raw_losses[-1])
    assert result.suggestion is None or math.isfinite(result.suggestion)
    assert_same_tensors(model.state_dict(), before)

    # a loss that returns NaN at one step only: the sweep stops there and the suggestion ignores it
    calls = {"n": 0}

    def flaky(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = F.mse_loss(out, target)
        return loss * math.nan if calls["n"] == 30 else loss

    result = lr_find(model, flaky, loader, opt, start_lr=1e-9, end_lr=1e-3, steps=50)
    assert len(result.lrs) == 30 and math.isnan(result.losses[-1])
    assert result.suggestion is not None and math.isfinite(result.suggestion)


def test_suggest_ignores_non_finite_values() -> None:
    lrs_ = list(np.logspace(-6, 0, 40))
    losses = [2.0 - 1.5 / (1 + math.exp(-(i - 20) / 3)) + (0.002 * (i - 34) ** 2 if i > 34 else 0.0) for i in range(40)]
    steep, valley, minimum = _suggest(lrs_, losses)
    assert steep is not None and lrs_[15] <= steep <= lrs_[25]
    assert valley is not None and math.isfinite(valley)
    assert minimum is not None and lrs_[30] <= minimum <= lrs_[36]
    losses_nan = losses[:30] + [math.nan, math.inf] + losses[32:]
    steep2, _, minimum2 = _suggest(lrs_, losses_nan)
    assert steep2 is not None and math.isfinite(steep2)
    assert minimum2 is not None and minimum2 < lrs_[30]  # only the part before the first bad value counts
    assert _suggest([1e-3, 1e-2], [1.0, math.nan]) == (None, None, None)
    # a loss that only rises has no descent: no steepest point and no minimum to cap a pick
    assert _suggest(lrs_, sorted(losses))[0::2] == (None, None)


@pytest.mark.parametrize(("name", "expected"), [("adamw", 0.01), ("adam", 0.0), ("sgd", 0.0), ("rmsprop", 0.0)])
def test_default_weight_decay_is_decoupled_only(name: str, expected: float) -> None:
    # AdamW's decay is decoupled from the gradient; for the others torch's weight_decay is an L2 term that the
    # adaptive step rescales (and that kills ReLUs with Adam): off unless asked for
    opt = build_optimizer(make_model(), OptimConfig(name=name, lr=0.01))
    assert opt.param_groups[0]["weight_decay"] == expected
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups[1:])  # biases and norm weights: never
    explicit = build_optimizer(make_model(), OptimConfig(name=name, lr=0.01, weight_decay=0.05))
    assert explicit.param_groups[0]["weight_decay"] == 0.05
