"""The UBR network (paper 003): torchvision's feature layouts, conv6, global pooling, fc."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from pipelines.ct_body_part.network import (  # noqa: E402
    ARCHITECTURES,
    CAFFE_MEAN_BGR,
    MIN_INPUT_SIZE,
    UBRNetwork,
    build_network,
    set_trainable,
)

# torchvision's vgg16().features / alexnet().features, written out from the architecture:
# (index, kind, in, out, kernel, stride, padding) for convolutions and pools; ReLU between.
VGG16_FEATURE_SHAPES = [
    ("features.0.weight", (64, 3, 3, 3)),
    ("features.0.bias", (64,)),
    ("features.2.weight", (64, 64, 3, 3)),
    ("features.2.bias", (64,)),
    ("features.5.weight", (128, 64, 3, 3)),
    ("features.5.bias", (128,)),
    ("features.7.weight", (128, 128, 3, 3)),
    ("features.7.bias", (128,)),
    ("features.10.weight", (256, 128, 3, 3)),
    ("features.10.bias", (256,)),
    ("features.12.weight", (256, 256, 3, 3)),
    ("features.12.bias", (256,)),
    ("features.14.weight", (256, 256, 3, 3)),
    ("features.14.bias", (256,)),
    ("features.17.weight", (512, 256, 3, 3)),
    ("features.17.bias", (512,)),
    ("features.19.weight", (512, 512, 3, 3)),
    ("features.19.bias", (512,)),
    ("features.21.weight", (512, 512, 3, 3)),
    ("features.21.bias", (512,)),
    ("features.24.weight", (512, 512, 3, 3)),
    ("features.24.bias", (512,)),
    ("features.26.weight", (512, 512, 3, 3)),
    ("features.26.bias", (512,)),
    ("features.28.weight", (512, 512, 3, 3)),
    ("features.28.bias", (512,)),
]
ALEXNET_FEATURE_SHAPES = [
    ("features.0.weight", (64, 3, 11, 11)),
    ("features.0.bias", (64,)),
    ("features.3.weight", (192, 64, 5, 5)),
    ("features.3.bias", (192,)),
    ("features.6.weight", (384, 192, 3, 3)),
    ("features.6.bias", (384,)),
    ("features.8.weight", (256, 384, 3, 3)),
    ("features.8.bias", (256,)),
    ("features.10.weight", (256, 256, 3, 3)),
    ("features.10.bias", (256,)),
]


def head_shapes(channels: int) -> list[tuple[str, tuple[int, ...]]]:
    return [
        ("conv6.weight", (512, channels, 1, 1)),
        ("conv6.bias", (512,)),
        ("fc.weight", (1, 512)),
        ("fc.bias", (1,)),
    ]


# Layer by layer: ("conv", out, kernel, stride, padding), ("relu",), ("pool", kernel, stride).
def vgg16_layout() -> list[tuple[object, ...]]:
    layout: list[tuple[object, ...]] = []
    for block in ([64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]):
        for out in block:
            layout += [("conv", out, 3, 1, 1), ("relu",)]
        layout.append(("pool", 2, 2))
    return layout


ALEXNET_LAYOUT: list[tuple[object, ...]] = [
    ("conv", 64, 11, 4, 2),
    ("relu",),
    ("pool", 3, 2),
    ("conv", 192, 5, 1, 2),
    ("relu",),
    ("pool", 3, 2),
    ("conv", 384, 3, 1, 1),
    ("relu",),
    ("conv", 256, 3, 1, 1),
    ("relu",),
    ("conv", 256, 3, 1, 1),
    ("relu",),
    ("pool", 3, 2),
]


@pytest.fixture(scope="module")
def networks() -> dict[str, UBRNetwork]:
    torch.manual_seed(0)
    return {arch: build_network(arch).eval() for arch in ARCHITECTURES}


def describe(module: nn.Module) -> tuple[object, ...]:
    if isinstance(module, nn.Conv2d):
        return (
            "conv",
            module.out_channels,
            module.kernel_size[0],
            module.stride[0],
            module.padding[0],
        )  # type: ignore[index]
    if isinstance(module, nn.ReLU):
        return ("relu",)
    if isinstance(module, nn.MaxPool2d):
        return ("pool", module.kernel_size, module.stride)
    return (type(module).__name__,)


def test_architectures_and_caffe_means() -> None:
    assert ARCHITECTURES == ("vgg16", "alexnet")
    assert CAFFE_MEAN_BGR == (103.939, 116.779, 123.68)
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'"):
        build_network("resnet50")


@pytest.mark.parametrize(
    ("arch", "expected", "channels"),
    [("vgg16", VGG16_FEATURE_SHAPES, 512), ("alexnet", ALEXNET_FEATURE_SHAPES, 256)],
)
def test_state_dict_is_torchvisions_features_then_the_head(
    networks: dict[str, UBRNetwork],
    arch: str,
    expected: list[tuple[str, tuple[int, ...]]],
    channels: int,
) -> None:
    layout = [(key, tuple(value.shape)) for key, value in networks[arch].state_dict().items()]
    assert layout == expected + head_shapes(channels)


@pytest.mark.parametrize(
    ("arch", "layout"), [("vgg16", vgg16_layout()), ("alexnet", ALEXNET_LAYOUT)]
)
def test_feature_layers_are_laid_out_as_torchvision(
    networks: dict[str, UBRNetwork], arch: str, layout: list[tuple[object, ...]]
) -> None:
    features = networks[arch].features
    assert isinstance(features, nn.Sequential)
    assert [describe(module) for module in features] == layout
    assert len(features) == (31 if arch == "vgg16" else 13)  # pool5 included


@pytest.mark.parametrize("size", [64, 128, 224])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_one_score_per_slice(networks: dict[str, UBRNetwork], arch: str, size: int) -> None:
    torch.manual_seed(size)
    batch = torch.rand(3, 3, size, size) * 255 - 120
    with torch.no_grad():
        scores = networks[arch](batch)
        alone = torch.cat([networks[arch](batch[i : i + 1]) for i in range(3)])
    assert scores.shape == (3,)
    assert scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores, alone, rtol=1e-4, atol=1e-5)  # slices don't mix
    assert len(set(scores.tolist())) == 3


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_any_size_from_the_minimum_non_square_too(
    networks: dict[str, UBRNetwork], arch: str
) -> None:
    smallest = MIN_INPUT_SIZE[arch]
    assert smallest == {"vgg16": 32, "alexnet": 63}[arch]
    with torch.no_grad():
        assert networks[arch](torch.randn(2, 3, smallest, smallest)).shape == (2,)
        assert networks[arch](torch.randn(1, 3, smallest, 3 * smallest + 5)).shape == (1,)
        channels_last = torch.randn(2, 3, 96, 80).contiguous(memory_format=torch.channels_last)
        assert networks[arch](channels_last).shape == (2,)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_too_small_or_malformed_input_is_a_clear_error(
    networks: dict[str, UBRNetwork], arch: str
) -> None:
    smallest = MIN_INPUT_SIZE[arch]
    network = networks[arch]
    with pytest.raises(ValueError, match=f"too small for {arch}.*at least {smallest}"):
        network(torch.randn(1, 3, smallest - 1, 256))
    with pytest.raises(ValueError, match="too small"):
        network(torch.randn(1, 3, 256, smallest - 1))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        network(torch.randn(1, 1, 128, 128))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        network(torch.randn(3, 128, 128))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_head_init(networks: dict[str, UBRNetwork], arch: str) -> None:
    network = networks[arch]
    assert isinstance(network.conv6, nn.Conv2d)
    assert network.conv6.kernel_size == (1, 1) and network.conv6.stride == (1, 1)
    assert network.conv6.out_channels == 512
    assert isinstance(network.fc, nn.Linear)
    assert (network.fc.in_features, network.fc.out_features) == (512, 1)
    assert torch.count_nonzero(network.conv6.bias) == 0
    assert torch.count_nonzero(network.fc.bias) == 0
    assert 0.005 < float(network.fc.weight.detach().std()) < 0.02
    fan_in = network.conv6.in_channels
    assert float(network.conv6.weight.detach().std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)


def trainable_names(network: nn.Module) -> list[str]:
    return [name for name, p in network.named_parameters() if p.requires_grad]


HEAD = ["conv6.weight", "conv6.bias", "fc.weight", "fc.bias"]


def conv_params(*indices: int) -> list[str]:
    return [f"features.{i}.{kind}" for i in indices for kind in ("weight", "bias")]


@pytest.mark.parametrize(
    ("arch", "part", "expected"),
    [
        ("vgg16", "head", HEAD),
        ("vgg16", "conv5", conv_params(24, 26, 28) + HEAD),
        ("vgg16", "all", [key for key, _ in VGG16_FEATURE_SHAPES] + HEAD),
        ("alexnet", "head", HEAD),
        ("alexnet", "conv5", conv_params(10) + HEAD),
        ("alexnet", "all", [key for key, _ in ALEXNET_FEATURE_SHAPES] + HEAD),
    ],
)
def test_set_trainable_parts(arch: str, part: str, expected: list[str]) -> None:
    network = build_network(arch)
    set_trainable(network, "head")  # from a different state, so each part sets both ways
    trainable = set_trainable(network, part)  # type: ignore[arg-type]
    assert trainable_names(network) == expected
    assert [id(p) for p in trainable] == [
        id(p) for name, p in network.named_parameters() if name in expected
    ]


def test_set_trainable_rejects_unknown_parts_and_networks() -> None:
    network = build_network("alexnet")
    with pytest.raises(ValueError, match="part 'fc' must be one of all, conv5, head"):
        set_trainable(network, "fc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="UBRNetwork"):
        set_trainable(nn.Linear(2, 1), "all")


@pytest.mark.parametrize(("arch", "size"), [("vgg16", 48), ("alexnet", 96)])
@pytest.mark.parametrize("part", ["head", "conv5"])
def test_a_gradient_step_changes_only_the_trainable_parameters(
    arch: str, size: int, part: str
) -> None:
    torch.manual_seed(1)
    network = build_network(arch)
    trainable = set_trainable(network, part)  # type: ignore[arg-type]
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    optimizer = torch.optim.SGD(trainable, lr=0.01)
    batch = torch.rand(4, 3, size, size) * 255 - 120
    scores = network(batch)
    loss = ((scores - torch.arange(4.0)) ** 2).sum()  # reaches every parameter, fc.bias too
    loss.backward()
    optimizer.step()
    names = set(trainable_names(network))
    for name, parameter in network.named_parameters():
        changed = not torch.equal(parameter.detach(), before[name])
        if name in names:
            assert changed, f"{name} is trainable but did not change"
        else:
            assert not changed, f"{name} is frozen but changed"
            assert parameter.grad is None


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_is_conv6_relu_global_average_pool_then_fc(
    networks: dict[str, UBRNetwork], arch: str
) -> None:
    network = networks[arch]
    torch.manual_seed(2)
    batch = torch.rand(2, 3, 100, 76) * 255 - 120
    with torch.no_grad():
        features = network.features(batch.clone())
        conv6 = torch.nn.functional.conv2d(features, network.conv6.weight, network.conv6.bias)
        pooled = conv6.clamp(min=0).mean(dim=(2, 3))
        expected = pooled @ network.fc.weight[0] + network.fc.bias[0]
        torch.testing.assert_close(network(batch), expected, rtol=1e-4, atol=1e-5)


def test_conv6_is_followed_by_a_relu() -> None:
    network = build_network("alexnet").eval()
    with torch.no_grad():
        network.conv6.bias.fill_(-1e6)  # every conv6 output negative: ReLU zeroes them all
        network.fc.bias.fill_(0.25)
        scores = network(torch.rand(3, 3, 80, 80) * 255 - 120)
    assert scores.tolist() == [0.25, 0.25, 0.25]
