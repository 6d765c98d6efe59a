"""The ``mura_abnormality`` pipeline on written synthetic studies with a model trained by
the ``smoke`` preset (once per session): the verdict, each view's probability on its own
SOP instance, heat-map SCs, a Key Object Selection only for an abnormal study, the study
encoded by the node's encoder and read back; options, bad input, a missing model."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from dicom_node.output.encode import encode_result
from pipelines import PipelineRegistry, PipelineResult, SeriesInput, StudyInput
from pipelines.errors import ModelMissing, PipelineInputError
from pipelines.mura_abnormality import MuraAbnormality
from pipelines.mura_abnormality.concepts import (
    ABNORMAL,
    FINDING,
    KEY_OBJECTS_TITLE,
    NORMAL,
    STUDY_PROBABILITY,
    VIEW_PROBABILITY,
)
from pipelines.mura_abnormality.heatmap import GradCamMaps, heat_peak, render_overlay
from pipelines.mura_abnormality.model import AGREEMENT_TOLERANCE, load_model
from pipelines.mura_abnormality.pipeline import Verdict, heat_map_views
from pipelines.mura_abnormality.regions import REGION_CODES
from pipelines.registry import BUILTIN_SCOPES
from tests.support.mura import smoke_mura_model, study_input
from tests.support.output import DEVICE, UID_ROOT, WHEN
from training.mura_abnormality.train import TrainedModel
from training.synthetic.msk_films import make_msk_study, write_msk_study

VERSION = "smoke-1"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return smoke_mura_model(tmp_path_factory.getbasetemp() / "mura-smoke")


def _write(folder: Path, seed: int, *, abnormal: bool, **kwargs: object):
    study = make_msk_study(
        seed, region="forearm", abnormality="hardware" if abnormal else None, abnormal=abnormal,
        views=3, size=256,
    )  # fmt: skip
    return write_msk_study(folder, study, series_per_view=True, **kwargs)  # type: ignore[arg-type]


def _run(trained: TrainedModel, written: object, **options: object) -> PipelineResult:
    pipeline = MuraAbnormality(runtime="torch", **options)  # type: ignore[arg-type]
    return pipeline.run(study_input(written, trained.folder, VERSION))  # type: ignore[arg-type]


def _views(result: PipelineResult) -> dict[str, float]:
    return {
        m.tracking_uid: m.value
        for m in result.measurements
        if m.concept == VIEW_PROBABILITY and m.tracking_uid is not None
    }


def test_a_study_in_several_series_gets_one_verdict_and_a_probability_per_view(
    trained: TrainedModel, tmp_path: Path
) -> None:
    written = _write(tmp_path, 21, abnormal=True)
    inputs = study_input(written, trained.folder, VERSION)
    assert len(inputs.series) == 3  # one series per view
    result = _run(trained, written)
    views = _views(result)
    assert set(views) == set(written.sop_instance_uids)
    sites = {m.finding_site for m in result.measurements if m.concept == VIEW_PROBABILITY}
    assert sites == {REGION_CODES["forearm"]}
    (study,) = (m.value for m in result.measurements if m.concept == STUDY_PROBABILITY)
    assert study == pytest.approx(float(np.mean(list(views.values()))), abs=1e-3)
    (finding,) = result.findings
    assert finding.concept == FINDING and finding.value in (ABNORMAL, NORMAL)
    threshold = result.summary["threshold"]
    assert threshold == pytest.approx(trained.card.calibration["threshold"], abs=1e-4)
    assert result.summary["verdict"] == ("abnormal" if study >= threshold else "normal")
    assert result.summary["threshold_from"] == "model card"
    assert len(result.source_headers) == 3
    assert [h.SOPInstanceUID for h in result.source_headers] == [
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in inputs.files
    ]


def test_an_abnormal_verdict_selects_its_views_and_draws_their_heat_maps(
    trained: TrainedModel, tmp_path: Path
) -> None:
    written = _write(tmp_path, 22, abnormal=True)
    result = _run(trained, written, threshold=0.0)  # every study is abnormal at 0
    views = _views(result)
    (finding,) = result.findings
    assert finding.value == ABNORMAL and result.summary["threshold_from"] == "pipeline_options"
    ranked = sorted(views, key=lambda uid: -views[uid])
    (selection,) = result.key_objects
    assert selection.title == KEY_OBJECTS_TITLE
    assert list(selection.sop_instance_uids) == ranked
    assert "Not for diagnosis" in selection.description
    assert [image.source_sop_instance_uid for image in result.derived_images] == ranked
    for image in result.derived_images:
        assert image.kind == "rgb_overlay" and image.burned_in_text
        assert image.pixels.dtype == np.uint8 and image.pixels.shape[2] == 3
        assert image.pixels.shape[1] >= 512  # wide enough for its legend
        assert image.pixel_spacing is not None
    assert finding.probability == pytest.approx(result.summary["study_probability"], abs=1e-4)


def test_a_normal_verdict_sends_no_key_objects_and_one_heat_map(
    trained: TrainedModel, tmp_path: Path
) -> None:
    written = _write(tmp_path, 23, abnormal=False)
    result = _run(trained, written, threshold=1.0)
    assert result.summary["study_probability"] < 1.0
    (finding,) = result.findings
    assert finding.value == NORMAL
    assert finding.probability == pytest.approx(1 - result.summary["study_probability"], abs=1e-4)
    assert result.key_objects == ()
    views = _views(result)
    (image,) = result.derived_images
    assert image.source_sop_instance_uid == max(views, key=lambda uid: views[uid])
    no_maps = _run(trained, written, threshold=1.0, heat_maps=False)
    assert no_maps.derived_images == () and _views(no_maps) == views


def test_the_threshold_decides_at_or_above() -> None:
    p = np.array([0.2, 0.7, 0.9, 0.7])
    assert heat_map_views(p, Verdict(0.625, 0.625)) == [2, 1, 3]
    assert Verdict(0.625, 0.625).abnormal and not Verdict(0.6249, 0.625).abnormal
    assert heat_map_views(p, Verdict(0.625, 0.9)) == [2]  # normal: the top view only


def test_the_trained_model_tells_hardware_from_none(trained: TrainedModel, tmp_path: Path) -> None:
    """The smoke model's probabilities on written DICOM studies (not the in-memory views it
    was evaluated on): abnormal studies rank above normal ones more often than not."""
    abnormal, normal = [], []
    for seed in range(30, 36):
        for flag, into in ((True, abnormal), (False, normal)):
            written = _write(tmp_path / f"{seed}-{flag}", seed, abnormal=flag)
            result = _run(trained, written, heat_maps=False)
            into.append(result.summary["study_probability"])
    pairs = [a > n for a in abnormal for n in normal]
    assert sum(pairs) / len(pairs) >= 0.7, (abnormal, normal)


def test_cr_monochrome1_studies_score_as_their_dx_twins(
    trained: TrainedModel, tmp_path: Path
) -> None:
    study = make_msk_study(24, region="hand", abnormal=True, views=2, size=256)
    dx = write_msk_study(tmp_path / "dx", study, series_per_view=True)
    cr = write_msk_study(
        tmp_path / "cr", study, modality="CR", photometric="MONOCHROME1", series_per_view=True
    )
    a, b = _run(trained, dx, heat_maps=False), _run(trained, cr, heat_maps=False)
    assert sorted(_views(a).values()) == pytest.approx(sorted(_views(b).values()), abs=0.02)


def test_unreadable_files_are_skipped_and_said(trained: TrainedModel, tmp_path: Path) -> None:
    written = _write(tmp_path, 25, abnormal=False)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")
    inputs = study_input(written, trained.folder, VERSION)
    first = inputs.series[0]
    series = SeriesInput(
        first.study_instance_uid, first.series_instance_uid, "DX",
        (*first.files, junk, first.files[0]), VERSION, trained.folder,
    )  # fmt: skip
    study = StudyInput(
        inputs.study_instance_uid, (series, *inputs.series[1:]), VERSION, trained.folder
    )
    result = MuraAbnormality(runtime="torch", heat_maps=False).run(study)
    skipped = result.summary["skipped"]
    assert isinstance(skipped, list) and len(skipped) == 2
    assert "not a readable DICOM file" in skipped[0] and "seen already" in skipped[1]
    assert len(_views(result)) == 3 and result.source_headers == ()
    only_junk = StudyInput(
        inputs.study_instance_uid,
        (
            SeriesInput(
                first.study_instance_uid,
                first.series_instance_uid,
                "DX",
                (junk,),
                VERSION,
                trained.folder,
            ),
        ),
        VERSION,
        trained.folder,
    )
    with pytest.raises(PipelineInputError, match="no view of the study could be read"):
        MuraAbnormality(runtime="torch").run(only_junk)


def test_without_a_model_the_job_is_told_how_to_get_one(tmp_path: Path) -> None:
    written = _write(tmp_path, 26, abnormal=False)
    with pytest.raises(ModelMissing, match="dicom-node train mura_abnormality"):
        MuraAbnormality(runtime="torch").run(study_input(written, None, "none-1"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"runtime": "gpu"}, "runtime"),
        ({"max_side": 10}, "max_side"),
        ({"batch_size": 0}, "batch_size"),
        ({"heat_maps": "yes"}, "heat_maps"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MuraAbnormality(**options)  # type: ignore[arg-type]


def test_the_registry_knows_it_as_study_scoped() -> None:
    registry = PipelineRegistry(options={"mura_abnormality": {"threshold": 0.4}})
    assert BUILTIN_SCOPES["mura_abnormality"] == "study"
    assert registry.scope("mura_abnormality") == "study"
    pipeline = registry.get("mura_abnormality")
    assert isinstance(pipeline, MuraAbnormality) and pipeline.threshold == 0.4


def test_onnx_runtime_agrees_with_torch(trained: TrainedModel) -> None:
    torch_model = load_model(trained.folder, runtime="torch")
    onnx_model = load_model(trained.folder, runtime="onnxruntime")
    assert onnx_model.runtime == "onnxruntime" and torch_model.runtime == "torch"
    batch = torch.rand(5, 3, torch_model.spec.size, torch_model.spec.size) * 2 - 1
    difference = np.abs(onnx_model.probabilities(batch) - torch_model.probabilities(batch))
    assert float(difference.max()) <= AGREEMENT_TOLERANCE
    # Grad-CAM's own forward pass (eager torch) gives the same probabilities
    _, eager = torch_model.heat_maps(batch)
    assert np.allclose(eager, torch_model.probabilities(batch), atol=1e-5)


class _SpotNetwork(torch.nn.Module):
    """A network whose abnormal logit is the mean of a positive 3 × 3 filter's output: its
    Grad-CAM map must be highest where the input is brightest."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False))
        torch.nn.init.constant_(self.features[0].weight, 1.0 / 27.0)
        self.class_layers = torch.nn.Sequential(
            OrderedDict(
                relu=torch.nn.ReLU(),
                pool=torch.nn.AdaptiveAvgPool2d(1),
                flatten=torch.nn.Flatten(1),
                out=torch.nn.Linear(4, 1),
            )
        )
        torch.nn.init.constant_(self.class_layers.out.weight, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_layers(self.features(x))


def test_grad_cam_mechanics_put_the_maximum_on_the_evidence() -> None:
    cam = GradCamMaps(_SpotNetwork())
    assert cam.layer == "class_layers.relu"  # no transitions: the final map
    batch = torch.full((2, 3, 64, 64), -1.0)
    batch[0, :, 40:48, 8:16] = 1.0
    batch[1, :, 4:12, 50:58] = 1.0
    maps, logits = cam(batch)
    assert maps.shape == (2, 64, 64) and float(maps.min()) >= 0.0 and float(maps.max()) == 1.0
    assert logits.shape == (2,)
    rows, columns = zip(*(heat_peak(m, (64, 64)) for m in maps), strict=True)
    assert 40 <= rows[0] <= 48 and 8 <= columns[0] <= 16
    assert 4 <= rows[1] <= 12 and 50 <= columns[1] <= 58
    assert heat_peak(maps[0], (1.0, 1.0))[0] == pytest.approx(rows[0] / 64)


def test_the_overlay_has_the_film_its_legend_and_the_warning() -> None:
    film = np.zeros((300, 200), dtype=np.uint16)
    heat = np.zeros((32, 32), dtype=np.float32)
    heat[8:12, 20:24] = 1.0
    pixels = render_overlay(film, heat, ["line one", "line two"], max_side=256)
    assert pixels.dtype == np.uint8 and pixels.shape[1] == 512  # widened for the legend
    film_rows = 768  # 300 × 512 / 200
    assert pixels.shape[0] > film_rows
    film_part, band = pixels[:film_rows], pixels[film_rows:]
    hot = film_part[8 * film_rows // 32 + 20, 20 * 512 // 32 + 20]
    assert hot[0] > hot[2]  # red over the heat, on a black film
    cold = film_part[5, 5]
    assert tuple(cold) == (0, 0, 0)  # no heat: the film as it is
    yellow = (band[..., 0] > 200) & (band[..., 1] > 150) & (band[..., 2] < 80)
    assert yellow.sum() > 50  # "NOT FOR DIAGNOSIS" in yellow


def test_its_results_encode_as_sr_sc_and_kos_that_read_back(
    trained: TrainedModel, tmp_path: Path
) -> None:
    written = _write(tmp_path, 27, abnormal=True)
    inputs = study_input(written, trained.folder, VERSION)
    result = _run(trained, written, threshold=0.0)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in inputs.files]
    outputs = encode_result(
        result, headers, device=DEVICE, uid_root=UID_ROOT, created_at=WHEN,
        source_key=f"study:{inputs.study_instance_uid}",
    )  # fmt: skip
    kinds = [o.kind for o in outputs]
    assert kinds.count("sr") == 1 and kinds.count("sc") == 3 and kinds.count("kos") == 1
    for output in outputs:
        path = tmp_path / f"{output.kind}-{output.sop_instance_uid}.dcm"
        output.dataset.save_as(path, enforce_file_format=True)
        back = pydicom.dcmread(path)
        assert back.StudyInstanceUID == written.study_instance_uid
    (kos,) = (o.dataset for o in outputs if o.kind == "kos")
    referenced = [
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for item in kos.ContentSequence
        if item.ValueType == "IMAGE"
    ]
    assert referenced == list(result.key_objects[0].sop_instance_uids)
