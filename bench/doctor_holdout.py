"""A held-out check of the doctor: runs its authors have not seen, written without tuning anything in
`gradwise.doctor`.

`bench/doctor/cases.py` is the suite the doctor's rules were developed against. This file is a second, independent
set: other datasets and splits (Fashion-MNIST subsets, sklearn digits read as 8x8 images, MNIST-1D's predefined
train/test split, wine/iris/breast_cancer/diabetes with other seeds and split shares), other architectures (2-D
CNNs, an nn.TransformerEncoder over MNIST-1D patches, an LSTM, a residual MLP with LayerNorm, models calling
F.relu / torch.tanh in forward()), other optimizers (RMSprop, NAdam, RAdam, Adamax, Adagrad, SGD with Nesterov)
and batch sizes. Faulty runs carry the finding codes a careful practitioner would expect from the mistake; healthy
runs are trained the way a careful practitioner would (standardized inputs, a sensible LR, early stopping) and must
produce no warning or error (info findings are fine).

Every run goes through the public API only: `gradwise.fit(model, (X, y), val=(Xv, yv), ..., progress="none")`
with the doctor on (its default), and reads `run.findings`.

    OMP_NUM_THREADS=1 python bench/doctor_holdout.py                 # every run (~1 min on one thread)
    OMP_NUM_THREADS=1 python bench/doctor_holdout.py --only cnn2d_digits_adamw,fashion_raw_pixels_mlp
    OMP_NUM_THREADS=1 python bench/doctor_holdout.py --keep /tmp/holdout   # keep the run directories
    OMP_NUM_THREADS=1 python bench/doctor_holdout.py --seed 1        # other splits, inits and batch orders

Exit status 0 when every expected code was found and no healthy run raised a warning or error.
"""

from __future__ import annotations

import sys
from typing import Any

import doctor_harness as harness
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

SET = harness.HeldOutSet(7)  # every split, initialization and batch order below derives from it (the case suite uses 0)

# --------------------------------------------------------------------------------------------- data (offline only)


_sklearn, _fashion = harness.sklearn_data, harness.fashion_data
_standardize, _t = harness.standardize, harness.tensor


def tabular(name: str, *, val_share: float = 0.3, scale: bool = True, seed: int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = _sklearn(name)
    order = np.random.RandomState(SET.seed if seed is None else seed).permutation(len(x))
    x, y = x[order], y[order]
    n = int(len(x) * val_share)
    xt, yt, xv, yv = x[n:], y[n:], x[:n], y[:n]
    if scale:
        xt, xv = _standardize(xt, xv)
    reg = name == "diabetes"
    return _t(xt), _t(yt, long=not reg), _t(xv), _t(yv, long=not reg)


def digits_images(seed: int | None = None) -> tuple[torch.Tensor, ...]:
    """sklearn digits as (N, 1, 8, 8) images, pixels 0..16 scaled by the training mean/std of all pixels."""
    x, y = _sklearn("digits")
    order = np.random.RandomState(SET.seed if seed is None else seed).permutation(len(x))
    x, y = x[order].reshape(-1, 1, 8, 8), y[order]
    n = 400
    xt, yt, xv, yv = x[n:], y[n:], x[:n], y[:n]
    mu, sd = xt.mean(), xt.std()
    return _t((xt - mu) / sd), _t(yt, True), _t((xv - mu) / sd), _t(yv, True)


def fashion(n_train: int, n_val: int, *, raw: bool = False, flat: bool = False, seed: int | None = None
            ) -> tuple[torch.Tensor, ...]:
    """A subset of Fashion-MNIST: training rows from its train split, validation rows from its test split."""
    x, y, xt_, yt_ = _fashion()
    rs = np.random.RandomState(SET.seed if seed is None else seed)
    i, j = rs.choice(len(x), n_train, replace=False), rs.choice(len(xt_), n_val, replace=False)
    xt, yt, xv, yv = x[i].astype(np.float32), y[i], xt_[j].astype(np.float32), yt_[j]
    if not raw:  # /255, then the training set's mean/std over all pixels
        xt, xv = xt / 255.0, xv / 255.0
        mu, sd = xt.mean(), xt.std()
        xt, xv = (xt - mu) / sd, (xv - mu) / sd
    if flat:
        xt, xv = xt.reshape(len(xt), -1), xv.reshape(len(xv), -1)
    return _t(xt), _t(yt, True), _t(xv), _t(yv, True)


def mnist1d(n_train: int | None = None, n_val: int = 1000, *, scale: bool = True) -> tuple[torch.Tensor, ...]:
    """MNIST-1D's own train/test split (the case suite concatenates and re-splits it)."""
    x, y, xv, yv = harness.mnist1d_split(n_train, n_val, scale)
    return _t(x), _t(y, True), _t(xv), _t(yv, True)


# --------------------------------------------------------------------------------------------- models




def _seeded(offset: int = 0) -> None:
    torch.manual_seed(SET.seed * 100 + offset)


class CNN2d(nn.Module):
    """Conv-ReLU-Conv-ReLU-MaxPool, twice for 28x28 images, once for 8x8; optional BatchNorm and final softmax."""

    def __init__(self, n_out: int, size: int = 8, c: int = 16, norm: bool = False, softmax: bool = False) -> None:
        super().__init__()
        bn = (lambda k: nn.BatchNorm2d(k)) if norm else (lambda k: nn.Identity())
        blocks: list[nn.Module] = [nn.Conv2d(1, c, 3, padding=1), bn(c), nn.ReLU(),
                                   nn.Conv2d(c, 2 * c, 3, padding=1), bn(2 * c), nn.ReLU(), nn.MaxPool2d(2)]
        side = size // 2
        if size >= 16:
            blocks += [nn.Conv2d(2 * c, 2 * c, 3, padding=1), bn(2 * c), nn.ReLU(), nn.MaxPool2d(2)]
            side //= 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * c * side * side, 64), nn.ReLU(), nn.Linear(64, n_out))
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return F.softmax(out, dim=1) if self.softmax else out  # the fault: probabilities into cross_entropy


class PatchTransformer(nn.Module):
    """MNIST-1D as a sequence: patches of 4 samples -> tokens, 2 TransformerEncoder layers, mean pooling."""

    def __init__(self, length: int = 40, patch: int = 4, d: int = 32, n_out: int = 10, layers: int = 2) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(patch, d)
        self.pos = nn.Parameter(torch.randn(1, length // patch, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.reshape(len(x), -1, self.patch)) + self.pos
        return self.head(self.norm(self.encoder(tokens).mean(1)))


class LSTMRows(nn.Module):
    """An image read row by row (digits: 8 steps of 8 pixels) by an LSTM; the last hidden state classifies."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 64) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.reshape(len(x), x.shape[-2], x.shape[-1])
        out, _ = self.lstm(seq)
        return self.head(out[:, -1])


class ResMLP(nn.Module):
    """A pre-norm residual MLP: x + W2·relu(W1·LN(x)) blocks."""

    def __init__(self, n_in: int, n_out: int, width: int = 128, blocks: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.ReLU(),
                                                  nn.Linear(2 * width, width)) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.flatten(1))
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


class FunctionalNet(nn.Module):
    """Activations called as functions in forward(): F.relu then torch.tanh, as many hand-written models do."""

    def __init__(self, n_in: int, n_out: int, width: int = 64) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(n_in, width), nn.Linear(width, width), nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.tanh(self.fc2(F.relu(self.fc1(x.flatten(1))))))


class TanhStack(nn.Module):
    """A deep tanh MLP whose weights the user initializes by hand with N(0, std²) (biases 0)."""

    def __init__(self, n_in: int, n_out: int, width: int, depth: int, std: float) -> None:
        super().__init__()
        dims = [n_in] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.out = nn.Linear(width, n_out)
        with torch.no_grad():
            for p in self.parameters():
                if p.ndim >= 2:
                    nn.init.normal_(p, std=std)
                else:
                    p.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.out(x)


def mlp(n_in: int, n_out: int, widths: tuple[int, ...], final: nn.Module | None = None,
        dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    d = n_in
    for w in widths:
        layers += [nn.Linear(d, w), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        d = w
    layers.append(nn.Linear(d, n_out))
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------- the runs


HoldoutRun = harness.HeldOutRun
RUNS = SET.runs
holdout = SET.register


def _kw(d: tuple[torch.Tensor, ...], **kw: Any) -> dict[str, Any]:
    xt, yt, xv, yv = d
    return {"train": (xt, yt), "val": (xv, yv), "seed": SET.seed, **kw}


# ---- healthy: standardized inputs, a sensible LR for the optimizer, enough epochs, early stopping (default) ----


@holdout("cnn2d_digits_adamw", "digits 8x8 images", "cnn2d", "adamw 1e-3, bs 32")
def _() -> dict[str, Any]:
    _seeded()
    return _kw(digits_images(), model=CNN2d(10, size=8), loss="cross_entropy", optimizer="adamw", lr=1e-3,
               batch_size=32, epochs=25)


@holdout("cnn2d_bn_fashion_nadam", "fashion-mnist 3000/500", "cnn2d+bn", "nadam 2e-3, bs 64")
def _() -> dict[str, Any]:
    _seeded()
    return _kw(fashion(3000, 500), model=CNN2d(10, size=28, c=8, norm=True), loss="cross_entropy",
               optimizer="nadam", lr=2e-3, batch_size=64, epochs=12)


@holdout("transformer_mnist1d_adamw", "mnist1d 4000/1000 (own split)", "transformer", "adamw 2e-3, bs 128")
def _() -> dict[str, Any]:
    _seeded()
    return _kw(mnist1d(), model=PatchTransformer(), loss="cross_entropy", optimizer="adamw", lr=2e-3,
               batch_size=128, epochs=40)


@holdout("lstm_digits_rows_rmsprop", "digits (rows as steps)", "lstm", "rmsprop 2e-3, bs 32")
def _() -> dict[str, Any]:
    _seeded()
    return _kw(digits_images(), model=LSTMRows(8, 10), loss="cross_entropy", optimizer="rmsprop", lr=2e-3,
               momentum=0.0, batch_size=32, epochs=30)


@holdout("resmlp_fashion_flat_radam", "fashion-mnist 3000/500 flat", "resmlp", "radam 1e-3, bs 128")
def _() -> dict[str, Any]:
    _seeded()
    return _kw(fashion(3000, 500, flat=True), model=ResMLP(784, 10, 128, 2), loss="cross_entropy",
               optimizer="radam", lr=1e-3, batch_size=128, epochs=25)


@holdout("functional_wine_sgd_nesterov", "wine (seed 7, 30% val)", "functional", "sgd nesterov 0.02, bs 8")
def _() -> dict[str, Any]:
    _seeded()
    return _kw(tabular("wine"), model=FunctionalNet(13, 3, 32), loss="cross_entropy", optimizer="sgd", lr=0.02,
               momentum=0.9, nesterov=True, weight_decay=5e-4, batch_size=8, epochs=25)


@holdout("breast_cancer_bce_adamax_dropout", "breast_cancer (seed 7)", "mlp+dropout", "adamax 2e-3, bs 16")
def _() -> dict[str, Any]:
    _seeded()
    xt, yt, xv, yv = tabular("breast_cancer")
    return _kw((xt, yt.float()[:, None], xv, yv.float()[:, None]), model=mlp(30, 1, (64, 32), dropout=0.2),
               loss="bce_with_logits", optimizer="adamax", lr=2e-3, batch_size=16, epochs=30)


@holdout("diabetes_huber_resmlp_adagrad", "diabetes (standardized y)", "resmlp", "adagrad 0.02, bs 32")
def _() -> dict[str, Any]:
    _seeded()
    xt, yt, xv, yv = tabular("diabetes")
    m, s = yt.mean(), yt.std()
    return _kw((xt, ((yt - m) / s)[:, None], xv, ((yv - m) / s)[:, None]), model=ResMLP(10, 1, 32, 1),
               loss="huber", optimizer="adagrad", lr=0.02, batch_size=32, epochs=40)


@holdout("iris_resmlp_adam_control", "iris (seed 7, 30% val)", "resmlp", "adam 3e-3, bs 8",
         note="the true-label twin of iris_shuffled_labels_resmlp (added after the first pass, as its paired control)")
def _() -> dict[str, Any]:
    _seeded()
    return _kw(tabular("iris"), model=ResMLP(4, 3, 64, 2), loss="cross_entropy", optimizer="adam", lr=3e-3,
               batch_size=8, epochs=40)


# ---- faulty: one realistic mistake each ---------------------------------------------------------------------


@holdout("fashion_cnn_torch_adam_lr_0.03", "fashion-mnist 2000/500", "cnn2d", "torch Adam 0.03, bs 64",
         "its own torch.optim.Adam with LR 0.03 (30x the usual 1e-3): constant LR, no clipping", ("lr_too_high",),
         note="with gradwise's own optimizer (warmup + cosine + clipping) the same LR did not hurt this CNN "
              "(best val acc 0.780 vs 0.784 at 1e-3): the fault is only real without them")
def _() -> dict[str, Any]:
    _seeded()
    model = CNN2d(10, size=28, c=8)
    return _kw(fashion(2000, 500), model=model, loss="cross_entropy",
               optimizer=torch.optim.Adam(model.parameters(), lr=0.03), batch_size=64, epochs=6)


@holdout("transformer_sgd_lr_1e-4", "mnist1d 2000/1000 (own split)", "transformer", "sgd 1e-4, bs 64",
         "plain SGD with LR 1e-4 on a transformer (the usual SGD LR is 0.01-0.1)", ("lr_too_low",))
def _() -> dict[str, Any]:
    _seeded()
    return _kw(mnist1d(2000), model=PatchTransformer(), loss="cross_entropy", optimizer="sgd", lr=1e-4,
               momentum=0.0, batch_size=64, epochs=6)


@holdout("fashion_raw_pixels_mlp", "fashion-mnist 2000/500, pixels 0-255", "mlp", "adamw 1e-3, bs 64",
         "forgot to scale the pixels (0-255 fed as they are)", ("unnormalized_inputs",),
         note="a data property: with AdamW and clipping the cost was small (best val loss 0.533 vs 0.495 "
              "standardized, same accuracy)")
def _() -> dict[str, Any]:
    _seeded()
    return _kw(fashion(2000, 500, raw=True, flat=True), model=mlp(784, 10, (256, 128)), loss="cross_entropy",
               optimizer="adamw", lr=1e-3, batch_size=64, epochs=8)


@holdout("digits_cnn_functional_softmax_ce", "digits 8x8 images", "cnn2d", "adamw 1e-3, bs 32",
         "F.softmax at the end of forward() and loss=cross_entropy", ("loss_output_mismatch",))
def _() -> dict[str, Any]:
    _seeded()
    return _kw(digits_images(), model=CNN2d(10, size=8, softmax=True), loss="cross_entropy", optimizer="adamw",
               lr=1e-3, batch_size=32, epochs=10)


@holdout("mnist1d_sigmoid_mse_labels", "mnist1d 2000/1000 (own split)", "mlp", "adam 1e-3, bs 64",
         "one sigmoid output trained with MSE on the class labels 0..9 (as floats)", ("loss_output_mismatch",))
def _() -> dict[str, Any]:
    _seeded()
    xt, yt, xv, yv = mnist1d(2000)
    return _kw((xt, yt.float()[:, None], xv, yv.float()[:, None]), model=mlp(40, 1, (128, 64), final=nn.Sigmoid()),
               loss="mse", optimizer="adam", lr=1e-3, batch_size=64, epochs=8)


@holdout("iris_shuffled_labels_resmlp", "iris (seed 7, 30% val)", "resmlp", "adam 3e-3, bs 8",
         "labels shuffled relative to the inputs (y sorted separately from X)", ("label_problem",))
def _() -> dict[str, Any]:
    _seeded()
    xt, yt, xv, yv = tabular("iris")
    yt = yt[torch.randperm(len(yt), generator=torch.Generator().manual_seed(SET.seed))]
    return _kw((xt, yt, xv, yv), model=ResMLP(4, 3, 64, 2), loss="cross_entropy", optimizer="adam", lr=3e-3,
               batch_size=8, epochs=40)


@holdout("fashion_shuffled_labels_resmlp", "fashion-mnist 1000/500 flat", "resmlp", "adam 1e-3, bs 32",
         "training labels shuffled relative to the images (a misaligned join)", ("label_problem",),
         note="with weight_decay=0 the model memorizes faster (train loss 49% of S by epoch 14) and label_problem "
              "fires; with the default 0.01 early stopping ends the run at 84% of S")
def _() -> dict[str, Any]:
    _seeded()
    xt, yt, xv, yv = fashion(1000, 500, flat=True)
    yt = yt[torch.randperm(len(yt), generator=torch.Generator().manual_seed(SET.seed))]
    return _kw((xt, yt, xv, yv), model=ResMLP(784, 10, 256, 2), loss="cross_entropy", optimizer="adam", lr=1e-3,
               batch_size=32, epochs=40)


@holdout("lstm_adam_coupled_wd_0.5", "digits (rows as steps)", "lstm", "adam 3e-3 wd 0.5, bs 32",
         "Adam (coupled L2) with weight_decay=0.5, an AdamW-style value 50x too strong for L2",
         ("over_regularization",))
def _() -> dict[str, Any]:
    _seeded()
    return _kw(digits_images(), model=LSTMRows(8, 10), loss="cross_entropy", optimizer="adam", lr=3e-3,
               weight_decay=0.5, batch_size=32, epochs=10)


@holdout("deep_tanh_std1_init", "mnist1d 4000/1000 (own split)", "tanh-mlp", "sgd 0.01 m0.9, bs 64",
         "8 tanh layers initialized with N(0, 1) (gain ~11, Xavier is 1)", ("bad_initialization", "saturated_units"))
def _() -> dict[str, Any]:
    _seeded()
    return _kw(mnist1d(), model=TanhStack(40, 10, 128, 8, std=1.0), loss="cross_entropy", optimizer="sgd",
               lr=0.01, momentum=0.9, batch_size=64, epochs=8)


@holdout("deep_tanh_tiny_init", "wine (seed 7, 30% val)", "tanh-mlp", "sgd 0.05 m0.9, bs 16",
         "10 tanh layers initialized with N(0, 0.01²) (gain ~0.06): the signal dies with depth",
         ("bad_initialization", "vanishing_gradients"))
def _() -> dict[str, Any]:
    _seeded()
    return _kw(tabular("wine"), model=TanhStack(13, 3, 64, 10, std=0.01), loss="cross_entropy", optimizer="sgd",
               lr=0.05, momentum=0.9, batch_size=16, epochs=20)


@holdout("fashion_100_rows_big_mlp", "fashion-mnist 100/500 flat", "mlp", "adam 1e-3 wd 0, bs 16",
         "100 training images for a 2x1024 MLP, no regularization", ("overfitting",))
def _() -> dict[str, Any]:
    _seeded()
    return _kw(fashion(100, 500, flat=True), model=mlp(784, 10, (1024, 1024)), loss="cross_entropy",
               optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=16, epochs=30)


@holdout("breast_cancer_oversampled_before_split", "breast_cancer", "functional", "adamw 3e-3, bs 32",
         "minority class oversampled (copies) before the train/val split", ("data_leakage",))
def _() -> dict[str, Any]:
    _seeded()
    x, y = _sklearn("breast_cancer")
    minority = np.nonzero(y == 0)[0]
    x, y = np.concatenate([x, x[minority], x[minority]]), np.concatenate([y, y[minority], y[minority]])
    order = np.random.RandomState(SET.seed).permutation(len(x))
    x, y = x[order], y[order]
    n = len(x) // 5
    xt, xv = _standardize(x[n:], x[:n])
    return _kw((_t(xt), _t(y[n:], True), _t(xv), _t(y[:n], True)), model=FunctionalNet(30, 2, 64),
               loss="cross_entropy", optimizer="adamw", lr=3e-3, batch_size=32, epochs=15)


# ---- second batch: written after the doctor was revised against the runs above, before any of these was run ----
# (the runs above have been used for development since; these five are the only ones still unseen by that work)

FRESH = "second batch: written before its first run, after the doctor's revision against the first batch"


@holdout("digits_mlp_bn_sgd_onecycle", "digits (flat, seed-drawn split)", "mlp+bn", "sgd 0.1 m0.9 one_cycle, bs 32",
         note=FRESH)
def _() -> dict[str, Any]:
    _seeded()
    xt, yt, xv, yv = digits_images()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 64),
                          nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    return _kw((xt, yt, xv, yv), model=model, loss="cross_entropy", optimizer="sgd", lr=0.1, momentum=0.9,
               weight_decay=5e-4, schedule="one_cycle", batch_size=32, epochs=20)


@holdout("breast_cancer_tanh_mlp_adamw", "breast_cancer (seed 7, 30% val)", "tanh-mlp", "adamw 1e-3, bs 32",
         note=FRESH)
def _() -> dict[str, Any]:
    _seeded()
    model = nn.Sequential(nn.Linear(30, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
    return _kw(tabular("breast_cancer"), model=model, loss="cross_entropy", optimizer="adamw", lr=1e-3,
               batch_size=32, epochs=40)


@holdout("mnist1d_deep_relu_tiny_init", "mnist1d 4000/1000 (own split)", "mlp", "adamw 1e-3, bs 64",
         "6 ReLU layers initialized with N(0, 0.01²) (gain ~0.11, He is 1.41)", ("bad_initialization",), note=FRESH)
def _() -> dict[str, Any]:
    _seeded()
    model = mlp(40, 10, (128,) * 6)
    with torch.no_grad():
        for q in model.parameters():
            if q.ndim >= 2:
                nn.init.normal_(q, std=0.01)
            else:
                q.zero_()
    return _kw(mnist1d(), model=model, loss="cross_entropy", optimizer="adamw", lr=1e-3, batch_size=64, epochs=15)


@holdout("digits_cnn_shuffled_labels", "digits 8x8 images", "cnn2d", "adamw 1e-3, bs 32",
         "training labels shuffled relative to the images", ("label_problem",), note=FRESH)
def _() -> dict[str, Any]:
    _seeded()
    xt, yt, xv, yv = digits_images()
    yt = yt[torch.randperm(len(yt), generator=torch.Generator().manual_seed(SET.seed + 1))]
    return _kw((xt, yt, xv, yv), model=CNN2d(10, size=8), loss="cross_entropy", optimizer="adamw", lr=1e-3,
               batch_size=32, epochs=30)


@holdout("lstm_rmsprop_lr_1e-6", "digits (rows as steps)", "lstm", "rmsprop 1e-6, bs 32",
         "RMSprop with LR 1e-6 (the usual is 1e-3)", ("lr_too_low",), note=FRESH)
def _() -> dict[str, Any]:
    _seeded()
    return _kw(digits_images(), model=LSTMRows(8, 10), loss="cross_entropy", optimizer="rmsprop", lr=1e-6,
               momentum=0.0, batch_size=32, epochs=10)


RUN_BY_NAME: dict[str, HoldoutRun] = {r.name: r for r in RUNS}


# --------------------------------------------------------------------------------------------- running


execute = harness.execute


def report(results: list[harness.Result]) -> dict[str, Any]:
    return harness.report(results, RUN_BY_NAME)


def main(argv: list[str] | None = None) -> int:
    return SET.main(argv, __doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
