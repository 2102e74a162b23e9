"""Tests for gradwise.models: builders, activations, norms, inits, factories, errors and transfer learning."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from gradwise.config import ModelConfig
from gradwise.errors import ModelError
from gradwise.models import (
    ACTIVATIONS,
    build_model,
    count_parameters,
    freeze,
    load_pretrained,
    param_groups_by_depth,
    unfreeze,
)
from gradwise.models.layers import ChannelLayerNorm

sys.path.insert(0, str(Path(__file__).parent))  # so "helpers_models:..." factory strings import

SHAPES: dict[str, list[tuple[int, ...]]] = {
    "logreg": [(40,), (1, 8, 8)],
    "mlp": [(40,), (3, 8, 8)],
    "cnn1d": [(40,), (3, 40)],
    "cnn2d": [(1, 28, 28), (12, 12)],
    "resnet": [(3, 32, 32), (28, 28)],
    "rnn": [(40,), (12, 3)],
    "gru": [(40,), (12, 3)],
    "lstm": [(40,), (12, 3)],
    "transformer": [(40,), (12, 3)],
}
CASES = [(name, shape) for name, shapes in SHAPES.items() for shape in shapes]


def build(name: str = "mlp", shape: tuple[int, ...] = (40,), n_out: int = 10, task: str = "classification",
          **fields: object) -> nn.Module:
    return build_model(ModelConfig(name=name, **fields), shape, n_out, task)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ------------------------------------------------------------------------------------------------ builders


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_every_model_builds_runs_and_backprops(name: str, shape: tuple[int, ...]) -> None:
    model = build(name, shape, n_out=7)
    x = torch.randn(5, *shape)
    out = model(x)
    assert out.shape == (5, 7)
    nn.functional.cross_entropy(out, torch.randint(0, 7, (5,))).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)  # type: ignore[union-attr]
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_regression_output_width_and_eval_mode() -> None:
    model = build("cnn1d", (40,), n_out=3, task="regression")
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 40)).shape == (1, 3)  # batch of one works in eval mode (BatchNorm)


def test_logreg_is_one_linear() -> None:
    model = build("logreg", (1, 8, 8), n_out=4)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 64 and linears[0].out_features == 4


def test_mlp_widths_default_and_custom() -> None:
    default = [m.out_features for m in build("mlp").modules() if isinstance(m, nn.Linear)]
    assert default == [256, 256, 10]
    custom = [m.out_features for m in build("mlp", widths=[32, 16, 8]).modules() if isinstance(m, nn.Linear)]
    assert custom == [32, 16, 8, 10]


def test_cnn_fields_take_effect() -> None:
    model = build("cnn1d", channels=[8, 16], kernel_size=7, pooling="avg")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16]
    assert all(c.kernel_size == (7,) for c in convs)
    assert any(isinstance(m, nn.AvgPool1d) for m in model.modules())
    assert not any(isinstance(m, nn.MaxPool1d) for m in model.modules())
    no_pool = build("cnn1d", channels=[8, 16], pooling="none")
    assert not any(isinstance(m, nn.MaxPool1d | nn.AvgPool1d) for m in no_pool.modules())


def test_cnn1d_channels_first_input() -> None:
    model = build("cnn1d", (3, 40))
    first = next(m for m in model.modules() if isinstance(m, nn.Conv1d))
    assert first.in_channels == 3


def test_recurrent_and_transformer_fields_take_effect() -> None:
    model = build("lstm", (40,), hidden_size=24, num_layers=2)
    lstm = next(m for m in model.modules() if isinstance(m, nn.LSTM))
    assert lstm.hidden_size == 24 and lstm.num_layers == 2 and lstm.input_size == 1
    model = build("transformer", (40,), hidden_size=32, num_layers=3, heads=8)
    layers = [m for m in model.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    assert len(layers) == 3 and layers[0].self_attn.num_heads == 8 and layers[0].self_attn.embed_dim == 32


def test_options_pass_through() -> None:
    model = build("gru", (40,), options={"bidirectional": True, "pool": "mean"})
    assert next(m for m in model.modules() if isinstance(m, nn.GRU)).bidirectional
    assert model(torch.randn(2, 40)).shape == (2, 10)
    model = build("transformer", (40,), options={"patch_size": 4})
    assert model.embed.position.shape[1] == 10  # type: ignore[union-attr]
    assert model(torch.randn(2, 40)).shape == (2, 10)


# ------------------------------------------------------------------------------------------------ activation / norm


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("name", ["mlp", "cnn1d", "cnn2d", "resnet", "gru", "transformer"])
def test_activation_takes_effect(name: str, activation: str) -> None:
    shape = SHAPES[name][0]
    model = build(name, shape, activation=activation)
    expected = ACTIVATIONS[activation]
    assert any(type(m) is expected for m in model.modules())
    others = [cls for key, cls in ACTIVATIONS.items() if key != activation]
    assert not any(type(m) in others for m in model.modules())


@pytest.mark.parametrize(("name", "shape", "batch_cls"), [("mlp", (40,), nn.BatchNorm1d),
                                                          ("cnn1d", (40,), nn.BatchNorm1d),
                                                          ("cnn2d", (1, 16, 16), nn.BatchNorm2d),
                                                          ("resnet", (1, 16, 16), nn.BatchNorm2d),
                                                          ("gru", (40,), nn.BatchNorm1d)])
def test_norm_choice_puts_the_right_module(name: str, shape: tuple[int, ...], batch_cls: type[nn.Module]) -> None:
    batch = build(name, shape, norm="batch")
    assert any(isinstance(m, batch_cls) for m in batch.modules())
    assert not any(isinstance(m, nn.LayerNorm) for m in batch.modules())
    layer = build(name, shape, norm="layer")
    assert any(isinstance(m, nn.LayerNorm) for m in layer.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in layer.modules())
    layer(torch.randn(3, *shape)).sum().backward()
    none = build(name, shape, norm="none")
    assert not any(isinstance(m, nn.LayerNorm | nn.modules.batchnorm._BatchNorm) for m in none.modules())


def test_norm_defaults() -> None:
    assert any(isinstance(m, nn.BatchNorm1d) for m in build("cnn1d").modules())
    assert not any(isinstance(m, nn.BatchNorm1d | nn.LayerNorm) for m in build("mlp").modules())


def test_channel_layer_norm_normalises_channels() -> None:
    norm = ChannelLayerNorm(6)
    y = norm(torch.randn(4, 6, 9) * 5 + 3)
    assert torch.allclose(y.mean(1), torch.zeros(4, 9), atol=1e-5)
    assert torch.allclose(y.var(1, unbiased=False), torch.ones(4, 9), atol=1e-3)


@pytest.mark.parametrize("name", ["mlp", "cnn1d", "cnn2d", "resnet", "lstm", "transformer"])
def test_dropout_value_appears(name: str) -> None:
    model = build(name, SHAPES[name][0], dropout=0.3)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules())
    # Without dropout no active dropout layer is left (the transformer layers keep theirs at p=0).
    assert not any(isinstance(m, nn.Dropout) and m.p > 0 for m in build(name, SHAPES[name][0]).modules())


def test_selu_mlp_uses_alpha_dropout() -> None:
    model = build("mlp", activation="selu", dropout=0.2)
    assert any(isinstance(m, nn.AlphaDropout) and m.p == 0.2 for m in model.modules())


# ------------------------------------------------------------------------------------------------ init


def _big_layer(init: str, activation: str = "relu") -> torch.Tensor:
    # A logreg on 1000 inputs with 400 outputs: one 400×1000 weight, enough values for tight statistics.
    model = build("logreg", (1000,), n_out=400, init=init, activation=activation)
    return model.head.weight.detach()  # type: ignore[union-attr]


def test_he_normal_std() -> None:
    w = _big_layer("he_normal")
    assert w.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.03)
    assert abs(w.mean().item()) < 1e-3


def test_he_uniform_bound() -> None:
    w = _big_layer("he_uniform")
    bound = math.sqrt(6 / 1000)
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.98 * bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)


def test_xavier_uniform_bound_and_xavier_normal_std() -> None:
    w = _big_layer("xavier_uniform")
    bound = math.sqrt(6 / (1000 + 400))
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.98 * bound
    w = _big_layer("xavier_normal")
    assert w.std().item() == pytest.approx(math.sqrt(2 / 1400), rel=0.03)


def test_lecun_std() -> None:
    assert _big_layer("lecun").std().item() == pytest.approx(math.sqrt(1 / 1000), rel=0.03)


def test_orthogonal_rows() -> None:
    w = _big_layer("orthogonal")  # 400×1000: rows are orthonormal
    assert torch.allclose(w @ w.T, torch.eye(400), atol=1e-4)


def test_default_init_differs_from_he_normal() -> None:
    # torch's default Linear init is uniform with bound 1/sqrt(fan_in): std 1/sqrt(3·fan_in), not sqrt(2/fan_in).
    assert _big_layer("default").std().item() == pytest.approx(1 / math.sqrt(3000), rel=0.03)


@pytest.mark.parametrize("init", ["xavier_uniform", "he_normal", "orthogonal", "lecun"])
def test_init_reaches_convs_and_zeroes_biases(init: str) -> None:
    model = build("cnn2d", (1, 16, 16), norm="none", init=init)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert convs and all(m.bias is not None and torch.count_nonzero(m.bias) == 0 for m in convs)
    conv = convs[1]  # 32×32×3×3: fan_in 288
    if init == "he_normal":
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 288), rel=0.1)
    if init == "orthogonal":
        flat = conv.weight.detach().reshape(conv.weight.shape[0], -1)
        assert torch.allclose(flat @ flat.T, torch.eye(flat.shape[0]), atol=1e-4)


def test_orthogonal_init_per_gate_in_gru() -> None:
    model = build("gru", (10, 16), hidden_size=16, init="orthogonal")
    gru = next(m for m in model.modules() if isinstance(m, nn.GRU))
    for block in gru.weight_hh_l0.detach().chunk(3):
        assert torch.allclose(block @ block.T, torch.eye(16), atol=1e-4)
    assert torch.count_nonzero(gru.bias_hh_l0) == 0


# ------------------------------------------------------------------------------------------------ factory


def test_factory_gets_shape_and_options() -> None:
    cfg = ModelConfig(factory="helpers_models:make_net", options={"hidden": 5})
    model = build_model(cfg, (2, 3), 4, "classification")
    assert model(torch.randn(6, 2, 3)).shape == (6, 4)
    assert model[1].out_features == 5  # type: ignore[index]


def test_factory_without_shape_parameters() -> None:
    model = build_model(ModelConfig(factory="helpers_models:make_fixed", options={"width": 7}), (40,), 10,
                        "classification")
    assert isinstance(model, nn.Linear) and model.in_features == 7
    model = build_model(ModelConfig(factory="helpers_models:make_kwargs", options={"width": 6}), (40,), 10,
                        "classification")
    assert isinstance(model, nn.Linear) and model.in_features == 6


def test_factory_applies_init() -> None:
    model = build_model(ModelConfig(factory="helpers_models:make_net", init="orthogonal"), (40,), 4,
                        "classification")
    w = model[1].weight.detach()  # type: ignore[index]
    assert torch.allclose(w @ w.T, torch.eye(w.shape[0]), atol=1e-4)


@pytest.mark.parametrize(("factory", "needle"), [
    ("helpers_models_missing:make_net", "cannot import module"),
    ("helpers_models:make_nett", "has no attribute 'make_nett'"),
    ("helpers_models:not_a_module", "not a torch.nn.Module"),
    ("helpers_models:NOT_CALLABLE", "not a function"),
    ("helpers_models.make_net", "package.module:function"),
])
def test_factory_errors(factory: str, needle: str) -> None:
    with pytest.raises(ModelError, match=needle):
        build_model(ModelConfig(factory=factory), (40,), 10, "classification")


def test_factory_bad_option_is_model_error() -> None:
    with pytest.raises(ModelError, match="could not be called"):
        build_model(ModelConfig(factory="helpers_models:make_net", options={"nope": 1}), (40,), 10,
                    "classification")


def test_factory_missing_attribute_lists_callables() -> None:
    with pytest.raises(ModelError, match="make_net"):
        build_model(ModelConfig(factory="helpers_models:make_nett"), (40,), 10, "classification")


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_model_name_suggests_closest() -> None:
    with pytest.raises(ModelError) as info:
        build("cnn1", (40,))
    text = str(info.value)
    assert "Did you mean 'cnn1d'" in text and "transformer" in text and "model.name" in text


def test_unknown_activation_and_init() -> None:
    with pytest.raises(ModelError, match="Did you mean 'gelu'") as info:
        build(activation="gelu2")
    assert "leaky_relu" in str(info.value)
    with pytest.raises(ModelError, match="Did you mean 'he_normal'") as info:
        build(init="he_nromal")
    assert "orthogonal" in str(info.value)


def test_activation_and_init_spellings_are_forgiving() -> None:
    model = build(activation="LeakyReLU", init="kaiming_normal")
    assert any(isinstance(m, nn.LeakyReLU) for m in model.modules())


@pytest.mark.parametrize(("name", "shape", "needle"), [
    ("cnn2d", (40,), "cnn1d"),
    ("resnet", (40,), "(C, H, W)"),
    ("cnn1d", (1, 28, 28), "cnn2d or resnet"),
    ("gru", (1, 28, 28), "cnn2d or resnet"),
    ("transformer", (1, 28, 28), "(T, F)"),
])
def test_incompatible_shape(name: str, shape: tuple[int, ...], needle: str) -> None:
    with pytest.raises(ModelError) as info:
        build(name, shape)
    assert needle in str(info.value) and str(shape) in str(info.value)


def test_other_build_errors() -> None:
    with pytest.raises(ModelError, match="not divisible by heads"):
        build("transformer", hidden_size=30, heads=4)
    with pytest.raises(ModelError, match="norm='batch' is not supported"):
        build("transformer", norm="batch")
    with pytest.raises(ModelError, match="no option 'bogus'.*convs_per_stage"):
        build("cnn1d", options={"bogus": 1})
    with pytest.raises(ModelError, match="set model.channels instead"):
        build("cnn1d", options={"channels": [8]})
    with pytest.raises(ModelError, match="non-empty list"):
        build("mlp", widths=[])
    with pytest.raises(ModelError, match="task"):
        build(task="ranking")
    with pytest.raises(ModelError, match="global_pool"):
        build("cnn1d", options={"global_pool": "sum"})


def test_unused_field_warns() -> None:
    with pytest.warns(UserWarning, match="widths"):
        build("cnn1d", widths=[10])


# ------------------------------------------------------------------------------------------------ transfer learning


def _source_and_target() -> tuple[nn.Module, nn.Module]:
    source = build("cnn1d", (40,), n_out=10, channels=[8, 16])
    target = build("cnn1d", (40,), n_out=3, channels=[8, 16])  # same backbone, new head
    return source, target


def test_load_pretrained_strict_roundtrip_from_checkpoint(tmp_path: Path) -> None:
    source, _ = _source_and_target()
    path = tmp_path / "ckpt.pt"
    torch.save({"model": source.state_dict(), "epoch": 3, "metrics": {"val_loss": 0.5}}, path)
    target = build("cnn1d", (40,), n_out=10, channels=[8, 16])
    report = load_pretrained(target, str(path), strict=True)
    assert report["missing"] == [] and report["unexpected"] == [] and report["shape_mismatch"] == []
    assert set(report["matched"]) == set(source.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_load_pretrained_partial_state_dict(tmp_path: Path) -> None:
    source, target = _source_and_target()
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    head_before = target.head[0].weight.detach().clone()  # type: ignore[index]
    report = load_pretrained(target, str(path), strict=False)
    assert sorted(report["shape_mismatch"]) == ["head.0.bias", "head.0.weight"]
    assert report["missing"] == [] and report["unexpected"] == []
    assert "block1.0.weight" in report["matched"] and "head.0.weight" not in report["matched"]
    assert torch.equal(target.block1[0].weight, source.block1[0].weight)  # type: ignore[index]
    assert torch.equal(target.head[0].weight, head_before)  # type: ignore[index]


def test_load_pretrained_strict_mismatch_raises_and_loads_nothing(tmp_path: Path) -> None:
    source, target = _source_and_target()
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ModelError, match="shape differs.*head.0.weight.*pretrained_strict: false"):
        load_pretrained(target, str(path), strict=True)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_load_pretrained_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source, target = _source_and_target()
    state = {k: v.contiguous() for k, v in source.state_dict().items() if not k.startswith("head")}
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "backbone.safetensors"
    save_file(state, str(path))
    report = load_pretrained(target, str(path), strict=False)
    assert report["unexpected"] == ["extra.weight"]
    assert sorted(report["missing"]) == ["head.0.bias", "head.0.weight"]
    assert torch.equal(target.block2[0].weight, source.block2[0].weight)  # type: ignore[index]
    with pytest.raises(ModelError, match="missing from the file"):
        load_pretrained(target, str(path), strict=True)


def test_load_pretrained_strips_wrapper_prefix(tmp_path: Path) -> None:
    source, _ = _source_and_target()
    path = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    target = build("cnn1d", (40,), n_out=10, channels=[8, 16])
    assert load_pretrained(target, str(path), strict=True)["missing"] == []


def test_load_pretrained_errors(tmp_path: Path) -> None:
    _, target = _source_and_target()
    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelError, match="nope.pt"):
        load_pretrained(target, str(missing), strict=False)
    other = tmp_path / "other.pt"
    torch.save(nn.Linear(3, 3).state_dict(), other)
    with pytest.raises(ModelError, match="no entry matches"):
        load_pretrained(target, str(other), strict=False)
    junk = tmp_path / "junk.pt"
    torch.save({"optimizer": {"lr": 0.1}}, junk)
    with pytest.raises(ModelError, match="no state_dict under 'model'"):
        load_pretrained(target, str(junk), strict=False)


def test_load_pretrained_refuses_pickled_objects(tmp_path: Path) -> None:
    _, target = _source_and_target()
    path = tmp_path / "whole.pt"
    torch.save(target, path)  # a whole pickled module is not loadable with weights_only=True
    with pytest.raises(ModelError, match="weights_only"):
        load_pretrained(target, str(path), strict=False)


def test_freeze_keeps_params_identical_after_step() -> None:
    model = build("cnn1d", (40,), channels=[8, 16])
    frozen = freeze(model, ["block1"])
    assert frozen and all(name.startswith("block1.") for name in frozen)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # Every parameter goes to the optimizer, as a training loop might do: frozen ones get no grad, so even weight
    # decay must leave them alone.
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    nn.functional.cross_entropy(model(torch.randn(8, 40)), torch.randint(0, 10, (8,))).backward()
    opt.step()
    after = dict(model.named_parameters())
    for name in frozen:
        assert torch.equal(after[name], before[name]) and after[name].grad is None
    moved = [n for n in after if n not in frozen and not torch.equal(after[n], before[n])]
    assert "block2.0.weight" in moved and "head.0.weight" in moved
    assert count_parameters(model) == sum(p.numel() for n, p in after.items() if n not in frozen)


def test_freeze_patterns() -> None:
    model = build("cnn1d", (40,), channels=[8, 16])
    assert freeze(model, ["block1.*"]) == freeze(build("cnn1d", (40,), channels=[8, 16]), ["block1"])
    biases = freeze(model, ["*.bias"])
    assert biases and all(n.endswith(".bias") for n in biases)
    with pytest.raises(ModelError, match="matches no parameter.*block1"):
        freeze(model, ["features"])
    unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())


def test_param_groups_by_depth() -> None:
    model = build("cnn1d", (40,), channels=[8, 16])
    groups = param_groups_by_depth(model)
    assert [g[0].split(".")[0] for g in groups] == ["block1", "block2", "head"]
    assert sum(len(g) for g in groups) == len(list(model.parameters()))

    class WithRootParam(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.a = nn.Linear(2, 2)
            self.act = nn.ReLU()
            self.b = nn.Linear(2, 2)
            self.b.weight = self.a.weight  # shared: counted once, in the first group that holds it

    groups = param_groups_by_depth(WithRootParam())
    assert groups == [["scale"], ["a.weight", "a.bias"], ["b.bias"]]


def test_transformer_cuts_a_univariate_signal_into_patches_about_sqrt_length_long() -> None:
    from gradwise.models.architectures import transformer

    signal = transformer((40,), 10)  # MNIST-1D: 40 steps of 1 feature -> 8 tokens of 5 steps
    assert signal.embed.proj.in_features == 5 and signal.embed.position.shape[1] == 8
    assert transformer((512,), 2).embed.proj.in_features == 16  # PatchTST's patch length for long series
    rows = transformer((8, 8), 10)  # 8 steps of 8 features: one token per step
    assert rows.embed.proj.in_features == 8 and rows.embed.position.shape[1] == 8
    assert transformer((40,), 10, patch_size=1).embed.position.shape[1] == 40  # an explicit choice wins
