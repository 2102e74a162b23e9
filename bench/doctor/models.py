"""The models the doctor's held-out and blind sets train: the MLP stack every set uses (activations, norm, dropout,
a final layer), small CNNs over 1-D signals and 8x8 / 28x28 images, RNNs, transformers, residual MLPs, and the
`model.factory` functions blind6's `gradwise train` cases name. A case names a builder and its arguments; the
harness seeds torch right before calling it, so a model's initial weights follow the set's seed.

Each class is kept exactly as its set first wrote it (the parameter order decides the initial weights, so a
"tidier" rewrite would change the runs the recorded results were measured on).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


def stack(n_in: int, n_out: int, widths: tuple[int, ...], act: Callable[[], nn.Module] | None = nn.ReLU,
          final: nn.Module | tuple[nn.Module, ...] | None = None, dropout: float = 0.0,
          norm: Callable[[int], nn.Module] | None = None, flatten: bool = True) -> nn.Sequential:
    """[Flatten], then Linear layers of the given widths, each followed by [norm], the activation (none: `act`
    None) and [dropout], then the `final` module(s) (an output activation, a Flatten(0) for 1-D outputs ...)."""
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    d = n_in
    for w in widths:
        layers.append(nn.Linear(d, w))
        if norm is not None:
            layers.append(norm(w))
        if act is not None:
            layers.append(act())
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = w
    layers.append(nn.Linear(d, n_out))
    if final is not None:
        layers += final if isinstance(final, tuple) else [final]
    return nn.Sequential(*layers)


def then(body: Callable[[], nn.Module], *tail: nn.Module) -> nn.Sequential:
    """nn.Sequential(body(), *tail): a built model with modules appended after it (an output ReLU, a Flatten(0))."""
    return nn.Sequential(body(), *tail)


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def normal_init(model: nn.Module, std: float, bias: float = 0.0) -> nn.Module:
    """Every Linear weight drawn from N(0, std²), biases set to `bias` (an old tutorial's init)."""
    for m in linears(model):
        nn.init.normal_(m.weight, 0.0, std)
        nn.init.constant_(m.bias, bias)
    return model


# ---- model.factory functions (`gradwise train` imports them as doctor.models:<name>; blind6 names them) ----


def softmax_mlp(input_shape: tuple[int, ...], n_outputs: int) -> Any:
    return nn.Sequential(nn.Flatten(), stack(math.prod(input_shape), n_outputs, (64, 64), final=nn.Softmax(dim=1),
                                             flatten=False))


def linear_stack(input_shape: tuple[int, ...], n_outputs: int) -> Any:
    d = math.prod(input_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 64), nn.Linear(64, 64), nn.Linear(64, n_outputs))


def randn_mlp(input_shape: tuple[int, ...], n_outputs: int) -> Any:
    model = nn.Sequential(nn.Flatten(), stack(math.prod(input_shape), n_outputs, (256,) * 5, flatten=False))
    with torch.no_grad():
        for m in linears(model):
            m.weight.copy_(torch.randn_like(m.weight))  # the bug: std 1 whatever the fan-in
            m.bias.zero_()
    return model


def always_dropout_mlp(input_shape: tuple[int, ...], n_outputs: int) -> Any:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = math.prod(input_shape)
            self.fc1, self.fc2, self.head = nn.Linear(d, 128), nn.Linear(128, 64), nn.Linear(64, n_outputs)

        def forward(self, x: Any) -> Any:
            x = x.flatten(1)
            x = F.dropout(F.relu(self.fc1(x)), 0.3, training=True)  # the bug: training=True, not self.training
            x = F.dropout(F.relu(self.fc2(x)), 0.3, training=True)
            return self.head(x)

    return Net()


# ---- architectures, by the set that introduced them ----


# from doctor_holdout.py
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


# from doctor_holdout.py
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


# from doctor_holdout.py
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


# from doctor_holdout.py
class PreNormResMLP(nn.Module):
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


# from doctor_holdout.py
class FunctionalNet(nn.Module):
    """Activations called as functions in forward(): F.relu then torch.tanh, as many hand-written models do."""

    def __init__(self, n_in: int, n_out: int, width: int = 64) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(n_in, width), nn.Linear(width, width), nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.tanh(self.fc2(F.relu(self.fc1(x.flatten(1))))))


# from doctor_holdout.py
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


# from doctor_blind.py
class DilatedCNN1d(nn.Module):
    """Three 1-D convolutions with dilations 1, 2, 4 over a (N, 40) signal, then a linear head."""

    def __init__(self, ch: int = 32, length: int = 40, n_out: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, ch, 5, padding=2), nn.GELU(),
            nn.Conv1d(ch, ch, 3, padding=2, dilation=2), nn.GELU(),
            nn.Conv1d(ch, ch, 3, padding=4, dilation=4), nn.GELU(),
            nn.MaxPool1d(2))
        self.head = nn.Linear(ch * (length // 2), n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


# from doctor_blind.py
class GRUColumns(nn.Module):
    """A GRU reading an 8x8 digit column by column (8 steps of 8 values)."""

    def __init__(self, hidden: int = 64, n_out: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.view(-1, 8, 8).transpose(1, 2)  # (N, steps=columns, 8)
        _, h = self.gru(seq)
        return self.head(h[-1])


# from doctor_blind.py
class GroupNormCNN(nn.Module):
    def __init__(self, n_out: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(32 * 7 * 7, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


# from doctor_blind2.py
class PointwiseCNN1d(nn.Module):
    """Conv1d layers over a (N, 40) signal, then global average pooling and a linear head."""

    def __init__(self, kernel: int, ch: int = 32, n_out: int = 10) -> None:
        super().__init__()
        p = kernel // 2
        self.features = nn.Sequential(
            nn.Conv1d(1, ch, kernel, padding=p), nn.ReLU(),
            nn.Conv1d(ch, ch, kernel, padding=p), nn.ReLU(),
            nn.Conv1d(ch, 2 * ch, kernel, padding=p), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1))
        self.head = nn.Linear(2 * ch, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


# from doctor_blind2.py
class CNN1d(nn.Module):
    """Two strided 1-D convolutions and a flattening head; `final` is appended after the head."""

    def __init__(self, final: nn.Module | None = None, act: Callable[[], nn.Module] = nn.ReLU,
                 depth: int = 2, ch: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(1, ch, 5, padding=2), act()]
        for _ in range(depth - 1):
            layers += [nn.Conv1d(ch, ch, 5, padding=2), act()]
        layers.append(nn.MaxPool1d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(ch * 20, 10)
        self.final = final

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x.unsqueeze(1)).flatten(1))
        return out if self.final is None else self.final(out)


# from doctor_blind2.py
class SeqRNN(nn.Module):
    """An LSTM / RNN reading a (N, 40) signal as `steps` steps of 40 // steps values; the last state -> head."""

    def __init__(self, kind: str = "lstm", hidden: int = 64, steps: int = 40, nonlinearity: str = "tanh") -> None:
        super().__init__()
        self.steps = steps
        width = 40 // steps
        if kind == "lstm":
            self.rnn: nn.Module = nn.LSTM(width, hidden, batch_first=True)
        else:
            self.rnn = nn.RNN(width, hidden, batch_first=True, nonlinearity=nonlinearity)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.view(len(x), self.steps, -1))
        return self.head(out[:, -1])


# from doctor_blind2.py
class DigitConvNet(nn.Module):
    """Two 3x3 convolutions on the 8x8 digits, one 2x2 max-pool, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.view(-1, 1, 8, 8)).flatten(1))


# from doctor_blind2.py
class RowTransformer(nn.Module):
    """A TransformerEncoder over the 8 rows of a digit (8 tokens of 8 pixels), mean-pooled, then a head."""

    def __init__(self, norm_first: bool, d: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.randn(1, 8, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=2 * d, dropout=0.1, batch_first=True,
                                           norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x.view(-1, 8, 8)) + self.pos)
        return self.head(h.mean(1))


# from doctor_blind2.py
class ResMLP(nn.Module):
    """An input projection, residual blocks x + W2·relu(W1·x), and a linear head."""

    def __init__(self, n_in: int, n_out: int, width: int = 64, blocks: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
                                    for _ in range(blocks))
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.head(torch.relu(h))


# from doctor_blind2.py
class AlwaysDropoutMLP(nn.Module):
    """A dropout MLP whose forward() starts with self.train(): 'so dropout is always applied' (also in eval)."""

    def __init__(self, n_in: int, n_out: int, width: int = 128, p: float = 0.5, force_train: bool = True) -> None:
        super().__init__()
        self.net = stack(n_in, n_out, (width, width), nn.ReLU, dropout=p)
        self.force_train = force_train

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.force_train:
            self.train()
        return self.net(x)


# from doctor_blind3.py
class BNConv1d(nn.Module):
    """Conv1d blocks with BatchNorm over a length-40 signal, global average pooling, an MLP head with BatchNorm1d."""

    def __init__(self, n_out: int = 10, ch: int = 24) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, ch, 5, padding=2), nn.BatchNorm1d(ch), nn.ReLU(),
            nn.Conv1d(ch, ch, 5, padding=2, stride=2), nn.BatchNorm1d(ch), nn.ReLU(),
            nn.Conv1d(ch, 2 * ch, 3, padding=1, stride=2), nn.BatchNorm1d(2 * ch), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * ch * 10, 64), nn.BatchNorm1d(64), nn.ReLU(),
                                  nn.Linear(64, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)))


# from doctor_blind3.py
class Conv1dNet(nn.Module):
    """Two Conv1d blocks (ReLU, max-pool, [dropout]) and a linear head over a length-40 signal."""

    def __init__(self, n_out: int = 10, ch: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, ch, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2), nn.Dropout(dropout),
            nn.Conv1d(ch, ch, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2), nn.Dropout(dropout),
            nn.Flatten(), nn.Linear(ch * 10, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1))


# from doctor_blind3.py
class ChunkGRU(nn.Module):
    """A GRU over a length-40 signal read as 10 steps of 4 values; the last hidden state feeds a linear head."""

    def __init__(self, hidden: int, n_out: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(4, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x.reshape(len(x), 10, 4))
        return self.head(out[:, -1])


# from doctor_blind3.py
class TanhRNN(nn.Module):
    """nn.RNN (tanh) over (N, T, 1) sequences; the last hidden state feeds a linear head."""

    def __init__(self, hidden: int = 32, n_out: int = 2) -> None:
        super().__init__()
        self.rnn = nn.RNN(1, hidden, batch_first=True, nonlinearity="tanh")
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


# from doctor_blind3.py
class Conv2dNet(nn.Module):
    """Two 3x3 conv blocks with max-pooling on 28x28 images, then a linear head."""

    def __init__(self, n_out: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(32 * 5 * 5, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# from doctor_blind3.py
class DigitsCNN(nn.Module):
    """Two 3x3 conv layers on the 8x8 digits (from 64 features), a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                                 nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(len(x), 1, 8, 8))


# from doctor_blind4.py
class TiedDeep(nn.Module):
    """One Linear layer applied `depth` times with a residual connection (weights shared across depth)."""

    def __init__(self, n_in: int, n_out: int, width: int, depth: int) -> None:
        super().__init__()
        self.inp, self.block, self.out, self.depth = nn.Linear(n_in, width), nn.Linear(width, width), \
            nn.Linear(width, n_out), depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        for _ in range(self.depth):
            h = h + torch.relu(self.block(h))
        return self.out(h)


# from doctor_blind4.py
class PixelEmbedding(nn.Module):
    """Digits' 0-16 pixel intensities as tokens: a value embedding plus a position embedding, flattened, then
    an MLP head with dropout."""

    def __init__(self, dim: int = 4, p: float = 0.2) -> None:
        super().__init__()
        self.value, self.pos = nn.Embedding(17, dim), nn.Parameter(torch.zeros(64, dim))
        self.head = nn.Sequential(nn.Flatten(), nn.LayerNorm(64 * dim), nn.Dropout(p), nn.Linear(64 * dim, 128),
                                  nn.GELU(), nn.Dropout(p), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.value(x.long().clamp(0, 16)) + self.pos)


# from doctor_blind4.py
class SeparableConv1d(nn.Module):
    """Depthwise-separable 1-D CNN: per channel conv, pointwise mix, BatchNorm, ReLU; global average pool."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 64), n_out: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(1, channels[0], 5, padding=2), nn.BatchNorm1d(channels[0]), nn.ReLU()]
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv1d(c_in, c_in, 5, padding=2, groups=c_in), nn.Conv1d(c_in, c_out, 1),
                       nn.BatchNorm1d(c_out), nn.ReLU(), nn.MaxPool1d(2)]
        self.features, self.head = nn.Sequential(*layers), nn.Linear(channels[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)).mean(-1))


# from doctor_blind5.py
def small_cnn2d(act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Conv(16) - act - MaxPool - Conv(32) - act - MaxPool - Linear(10) for 28x28 one-channel images."""
    return nn.Sequential(nn.Conv2d(1, 16, 3), act(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3), act(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 5 * 5, 10))


# from doctor_blind5.py
class Square(nn.Module):
    """x ** 2 as a hidden activation (a polynomial network)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


# from doctor_blind7.py
class ReluHeadMLP(nn.Module):
    """A regression MLP whose every Linear, the head included, is followed by ReLU (a copy-pasted block)."""

    def __init__(self, n_in: int, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(width, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def relu_head_mlp(input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """model.factory of blind7's relu_on_regression_head."""
    return ReluHeadMLP(math.prod(input_shape))


def bottleneck_mlp(input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """model.factory of blind7's two_unit_bottleneck: a 2-D 'embedding' layer (to plot it) before the classifier."""
    n_in = math.prod(input_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, 128), nn.ReLU(), nn.Linear(128, 2), nn.ReLU(),
                         nn.Linear(2, n_outputs))


# from doctor_blind7.py
class AlwaysDropout(nn.Module):
    """The classic functional-dropout bug: F.dropout's `training` defaults to True, so eval is random too."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(40, 256), nn.Linear(256, 256), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.relu(self.fc1(x)), 0.5)
        h = F.dropout(F.relu(self.fc2(h)), 0.5)
        return self.out(h)


# from doctor_blind7.py
class FrozenByMistake(nn.Module):
    """A feature-extraction snippet: the encoder runs under no_grad, but its pretrained weights were never loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.head = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.encoder(x)
        return self.head(h)


# from doctor_blind7.py
class SmallCNN(nn.Module):
    """Two Conv-BatchNorm-ReLU-MaxPool blocks on 28x28 images, then dropout 0.2 and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
