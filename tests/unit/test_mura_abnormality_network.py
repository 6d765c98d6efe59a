"""``mura_abnormality``'s network and input, against the paper: DenseNet-169 (121 as the
option) from MONAI with the head of its best model (dropout 0.2, batch norm, extra linear
layers, He init); 224 × 224 in [−1, 1]; MONOCHROME1 decoded by the film I/O."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom import Dataset
from torch import nn

from pipelines.film_io import read_film
from pipelines.mura_abnormality.network import (
    ARCHITECTURES,
    FINAL_LAYER,
    build_network,
    gradcam_layer,
    head_of,
    load_imagenet_weights,
    paper_head,
)
from pipelines.mura_abnormality.preprocess import (
    PAPER_SIZE,
    InputSpec,
    from_8bit,
    network_input,
    resized_8bit,
)
from pipelines.mura_abnormality.regions import REGION_CODES, REGIONS, region_of
from training.synthetic.msk_films import make_msk_study, write_msk_study

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("architecture", "features"), [("densenet169", 1664), ("densenet121", 1024)]
)
def test_the_head_sits_on_monais_densenet_as_the_paper_built_it(
    architecture: str, features: int
) -> None:
    torch.manual_seed(0)
    network = build_network(architecture)
    head = head_of(network)
    kinds = [type(layer) for layer in head]
    assert kinds == [
        nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout,
        nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout,
        nn.Linear,
    ]  # fmt: skip
    linears = [layer for layer in head if isinstance(layer, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (features, 512),
        (512, 128),
        (128, 1),
    ]
    assert all(layer.p == pytest.approx(0.2) for layer in head if isinstance(layer, nn.Dropout))
    # the DenseNet base is MONAI's, its pooling kept: the head replaces only the last linear
    assert type(network).__module__.startswith("monai.networks.nets")
    assert list(network.class_layers) == [
        network.class_layers.relu,
        network.class_layers.pool,
        network.class_layers.flatten,
        head,
    ]
    dense_layers = sum(1 for name, _ in network.named_modules() if name.endswith("denselayer1"))
    assert dense_layers == 4
    network.eval()
    with torch.no_grad():
        out = network(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert out.shape == (2, 1)


def test_the_head_is_he_initialised() -> None:
    torch.manual_seed(1)
    head = paper_head(1664)
    for layer in head:
        if isinstance(layer, nn.Linear):
            assert torch.count_nonzero(layer.bias) == 0
            expected = (2.0 / layer.in_features) ** 0.5  # Kaiming normal, fan-in, ReLU
            std = float(layer.weight.detach().std())
            assert std == pytest.approx(expected, rel=0.05 if layer.weight.numel() > 5000 else 0.5)
            assert (
                abs(float(layer.weight.detach().mean()))
                < 3 * expected / layer.weight.numel() ** 0.5
            )
    with pytest.raises(ValueError, match="dropout"):
        paper_head(16, dropout=1.0)


def test_the_architectures_and_their_grad_cam_layers() -> None:
    assert ARCHITECTURES[:2] == ("densenet169", "densenet121")
    assert gradcam_layer(build_network("densenet169")) == "features.transition3.relu"
    assert gradcam_layer(build_network("densenet121")) == "features.transition3.relu"
    tiny = build_network("densenet_tiny", head=(32,))
    assert gradcam_layer(tiny) == "features.transition2.relu"
    assert gradcam_layer(nn.Sequential()) == FINAL_LAYER
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("resnet50")


def _torchvision_names(state: dict[str, torch.Tensor], legacy: bool) -> dict[str, torch.Tensor]:
    """A MONAI DenseNet's base under torchvision's names: ``denselayer1.norm1.weight`` (or,
    ``legacy``, the published checkpoints' ``denselayer1.norm.1.weight``), plus its
    ImageNet classifier."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("features."):
            key = key.replace(".layers.", ".")
            if legacy:
                key = re.sub(r"\.(norm|relu|conv)([12])\.", r".\1.\2.", key)
            renamed[key] = value
    renamed["classifier.weight"] = torch.zeros(1000, 1024)
    return renamed


@pytest.mark.parametrize("legacy", [False, True])
def test_local_imagenet_weights_are_copied_into_the_base(legacy: bool) -> None:
    torch.manual_seed(2)
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in build_network("densenet121").state_dict().items()
    }
    target = build_network("densenet121")
    copied = load_imagenet_weights(target, _torchvision_names(state, legacy))
    own = target.state_dict()
    base = [k for k in own if k.startswith("features.")]
    assert copied == len(base)
    assert all(torch.equal(own[k], state[k]) for k in base)
    with pytest.raises(ValueError, match="not the weights of this architecture"):
        load_imagenet_weights(build_network("densenet169"), _torchvision_names(state, legacy))


def test_the_paper_input_is_224_in_minus_one_to_one() -> None:
    spec = InputSpec()
    assert spec.size == PAPER_SIZE == 224 and spec.channels == 3
    film = np.zeros((700, 500), dtype=np.uint16)
    film[:350] = 65535
    x = network_input(film, spec)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert torch.all(x[:, :112] == 1.0) and torch.all(x[:, 112:] == -1.0)
    # area averaging, not sampling: 2 × 2 blocks of a checkerboard average to mid grey
    checker = np.indices((448, 448)).sum(axis=0) % 2 * 255
    assert np.all(resized_8bit(checker.astype(np.uint8), 224) == 128)
    # 8-bit levels map linearly: 0 → −1, 255 → 1, 51 → −0.6, 204 → 0.6
    levels = np.tile(np.array([0, 255, 51, 204], dtype=np.uint8), (32, 8))[None]
    scaled = from_8bit(levels, InputSpec(size=32))
    assert scaled.shape == (1, 3, 32, 32)
    assert torch.allclose(scaled[0, 0, 0, :4], torch.tensor([-1.0, 1.0, -0.6, 0.6]))
    with pytest.raises(ValueError, match="input size"):
        InputSpec(size=16)
    assert InputSpec.from_json(InputSpec(size=96).to_json()) == InputSpec(size=96)


def test_monochrome1_films_are_inverted_by_the_film_io(tmp_path: Path) -> None:
    study = make_msk_study(11, region="wrist", abnormal=True, views=1, size=256)
    normal = write_msk_study(tmp_path / "m2", study, modality="DX", photometric="MONOCHROME2")
    inverted = write_msk_study(tmp_path / "m1", study, modality="CR", photometric="MONOCHROME1")
    spec = InputSpec(size=96)
    (m2,) = (network_input(read_film(p).display, spec) for p in normal.files)
    (m1,) = (network_input(read_film(p).display, spec) for p in inverted.files)
    assert float((m1 - m2).abs().max()) <= 2.0 / 255.0 + 1e-6
    # bone is bright in both: the stored MONOCHROME1 values themselves are the negative
    import pydicom

    stored = pydicom.dcmread(inverted.files[0]).pixel_array
    resized = resized_8bit(stored, 96).astype(np.float32) / 255.0 * 2 - 1
    assert np.corrcoef(resized.ravel(), m1[0].numpy().ravel())[0, 1] < -0.9


def test_regions_come_from_the_header() -> None:
    header = Dataset()
    header.BodyPartExamined = "WRIST"
    assert region_of(header) == "wrist"
    header.BodyPartExamined = "CHEST"
    header.SeriesDescription = "Forearm left AP"
    assert region_of(header) == "forearm"
    header.SeriesDescription = "Thumbs"
    assert region_of(header) == "finger"
    assert region_of(Dataset()) == "unknown"
    assert set(REGION_CODES) == set(REGIONS) and len(REGIONS) == 7


def test_the_pipeline_package_loads_without_torch() -> None:
    code = (
        "import sys; import pipelines.mura_abnormality as p; "
        "from pipelines import PipelineRegistry; PipelineRegistry().get('mura_abnormality'); "
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
