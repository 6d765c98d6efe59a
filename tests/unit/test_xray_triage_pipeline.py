"""The ``xray_triage`` pipeline: the decision and its summary keys with a model whose answer
is known (header agreeing, disagreeing, missing, empty, unknown; the confidence gate both
ways), the findings' and measurements' codes, options refused, bad input (a file skipped
with its reason, no decodable file), a missing model, a smoke-trained model on synthetic
films, and the real images the installed packages hold."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian

from pipelines import SeriesInput
from pipelines.errors import ModelMissing, PipelineInputError
from pipelines.registry import PipelineRegistry
from pipelines.xray_triage import XrayTriage
from pipelines.xray_triage.body_parts import SUMMARY, body_part_examined_of
from pipelines.xray_triage.concepts import (
    HEADER_DISAGREES,
    HEADER_TYPE,
    IS_XRAY,
    NO,
    TYPE_CODES,
    XRAY_PROBABILITY,
    XRAY_TYPE,
    YES,
    disagreement_value,
)
from pipelines.xray_triage.pipeline import header_body_part
from tests.support.models import smoke_triage_model, write_constant_triage_model
from training.synthetic.xray_types import (
    XRAY_TYPE_NAMES,
    make_triage_films,
    render_triage_film,
    write_triage_film,
)

SITE = Path(pydicom.__file__).resolve().parents[1]
SUMMARY_KEYS = [getattr(SUMMARY, f.name) for f in fields(SUMMARY)]


def _series(
    files: list[Path], model_dir: Path | None, version: str = "const-triage-1"
) -> SeriesInput:
    headers = [pydicom.dcmread(p, stop_before_pixels=True, force=True) for p in files]
    first = headers[0] if headers else None
    return SeriesInput(
        study_instance_uid=str(getattr(first, "StudyInstanceUID", "1.2.3")),
        series_instance_uid=str(getattr(first, "SeriesInstanceUID", "1.2.3.4")),
        modality=str(getattr(first, "Modality", "DX")),
        files=tuple(files),
        model_version=version,
        model_dir=model_dir,
    )


def _films(
    folder: Path, kind: str, count: int, body_part: object = ..., **kw: object
) -> list[Path]:
    written = []
    for seed in range(count):
        film = render_triage_film(kind, seed, size=96)
        written.append(
            write_triage_film(
                film,
                folder / f"{kind}-{seed}.dcm",
                body_part_examined=body_part,  # type: ignore[arg-type]
                study_instance_uid="1.2.826.0.1.3680043.8.498.99.1",
                series_instance_uid="1.2.826.0.1.3680043.8.498.99.2",
                seed=seed,
                **kw,  # type: ignore[arg-type]
            )
        )
    return written


@pytest.fixture
def hand_model(tmp_path: Path) -> Path:
    folder = tmp_path / "hand-model"
    write_constant_triage_model(
        folder, xray_probability=0.97, xray_type="hand", type_probability=0.95
    )
    return folder


# -- the decision ----------------------------------------------------------------------------


def test_an_agreeing_header_gives_the_type_and_no_disagreement(
    tmp_path: Path, hand_model: Path
) -> None:
    files = _films(tmp_path, "hand", 2)  # Body Part Examined HAND
    result = XrayTriage().run(_series(files, hand_model))
    summary: dict[str, Any] = result.summary
    assert [k for k in SUMMARY_KEYS if k not in summary] == []
    assert summary[SUMMARY.is_xray] is True
    assert summary[SUMMARY.xray_probability] == pytest.approx(0.97, abs=1e-3)
    assert summary[SUMMARY.xray_type] == "hand"
    assert summary[SUMMARY.body_part_examined] == "HAND" == body_part_examined_of("hand")
    assert summary[SUMMARY.type_probability] == pytest.approx(0.95, abs=1e-3)
    assert summary[SUMMARY.header_body_part] == "HAND" and summary[SUMMARY.header_type] == "hand"
    assert summary[SUMMARY.header_disagrees] is False
    assert (
        len(summary["films"]) == 2 and summary["thresholds_from"]["xray_threshold"] == "model card"
    )
    json.dumps(summary)  # the results log stores it as JSON
    findings = {f.concept: f for f in result.findings}
    assert findings[IS_XRAY].value == YES and findings[IS_XRAY].probability == pytest.approx(
        0.97, abs=1e-3
    )
    assert findings[XRAY_TYPE].value == TYPE_CODES["hand"] == TYPE_CODES["hand"]
    assert (
        findings[XRAY_TYPE].value.scheme == "SCT" and findings[XRAY_TYPE].value.value == "85562004"
    )
    assert HEADER_DISAGREES not in findings
    assert len(result.source_headers) == 2
    per_film = [m for m in result.measurements if m.tracking_uid is not None]
    assert len(per_film) == 4 and {m.tracking_uid for m in per_film} == {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files
    }


def test_a_confident_header_naming_another_type_disagrees(tmp_path: Path, hand_model: Path) -> None:
    files = _films(tmp_path, "hand", 1, body_part="CHEST")
    result = XrayTriage().run(_series(files, hand_model))
    summary: dict[str, Any] = result.summary
    assert summary[SUMMARY.header_body_part] == "CHEST" and summary[SUMMARY.header_type] == "chest"
    assert summary[SUMMARY.xray_type] == "hand" and summary[SUMMARY.header_disagrees] is True
    findings = {f.concept: f for f in result.findings}
    disagreement = findings[HEADER_DISAGREES]
    assert disagreement.value == disagreement_value("chest", "hand")
    assert "chest" in disagreement.value.meaning and "hand" in disagreement.value.meaning
    assert len(disagreement.value.value) <= 16  # a DICOM Code Value (SH)
    assert findings[HEADER_TYPE].value == TYPE_CODES["chest"]
    # The same header below the confidence threshold is no disagreement.
    calm = XrayTriage(disagreement_threshold=0.99).run(_series(files, hand_model))
    assert calm.summary[SUMMARY.header_disagrees] is False
    assert HEADER_DISAGREES not in {f.concept for f in calm.findings}
    thresholds_from: Any = calm.summary["thresholds_from"]
    assert thresholds_from["disagreement_threshold"] == "pipeline_options"


@pytest.mark.parametrize(
    ("body_part", "header", "header_type"),
    [
        (None, None, None),
        ("", "", None),
        ("EXTREMITY", "EXTREMITY", None),
        ("THORAX", "THORAX", "chest"),
    ],
)
def test_missing_empty_and_unknown_headers_name_no_type(
    tmp_path: Path,
    hand_model: Path,
    body_part: str | None,
    header: str | None,
    header_type: str | None,
) -> None:
    files = _films(tmp_path, "hand", 1, body_part=body_part)
    summary = XrayTriage().run(_series(files, hand_model)).summary
    assert summary[SUMMARY.header_body_part] == header
    assert summary[SUMMARY.header_type] == header_type
    assert summary[SUMMARY.header_disagrees] is (header_type is not None)  # thorax = chest ≠ hand
    assert summary[SUMMARY.xray_type] == "hand"


def test_not_an_xray_stops_before_module_ii(tmp_path: Path) -> None:
    folder = tmp_path / "photo-model"
    write_constant_triage_model(folder, xray_probability=0.1, xray_type="chest")
    files = _films(tmp_path, "photo", 1, body_part="CHEST", modality="CR")
    result = XrayTriage().run(_series(files, folder))
    summary: dict[str, Any] = result.summary
    assert summary[SUMMARY.is_xray] is False
    assert summary[SUMMARY.xray_probability] == pytest.approx(0.1, abs=1e-3)
    assert summary[SUMMARY.xray_type] is None and summary[SUMMARY.type_probability] is None
    assert summary[SUMMARY.body_part_examined] is None and summary["type_probabilities"] is None
    assert summary[SUMMARY.header_type] == "chest" and summary[SUMMARY.header_disagrees] is False
    findings = {f.concept: f for f in result.findings}
    assert findings[IS_XRAY].value == NO and findings[IS_XRAY].probability == pytest.approx(
        0.9, abs=1e-3
    )
    assert XRAY_TYPE not in findings
    # The option moves the threshold: at 0.05 the same series is an X-ray.
    lenient = XrayTriage(xray_threshold=0.05).run(_series(files, folder)).summary
    assert lenient[SUMMARY.is_xray] is True and lenient[SUMMARY.xray_type] == "chest"
    assert lenient[SUMMARY.header_disagrees] is False  # the header agrees then


def test_the_series_header_is_the_most_common_value() -> None:
    assert header_body_part(["HAND", None, "CHEST", "HAND"]) == "HAND"
    assert header_body_part(["", None]) == ""
    assert header_body_part([None, None]) is None
    assert header_body_part(["WRIST", "HAND"]) == "WRIST"


# -- options, bad input, no model ---------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"xray_threshold": 1.5},
        {"xray_threshold": "high"},
        {"disagreement_threshold": -0.1},
        {"disagreement_threshold": True},
        {"batch_size": 0},
        {"batch_size": 2.5},
    ],
)
def test_options_that_cannot_work_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        XrayTriage(**options)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="not accepted"):
        PipelineRegistry(options={"xray_triage": options}).get("xray_triage")


def test_the_registry_loads_it_series_scoped_without_torch_or_a_model() -> None:
    registry = PipelineRegistry(options={"xray_triage": {"disagreement_threshold": 0.8}})
    pipeline = registry.get("xray_triage")
    assert isinstance(pipeline, XrayTriage) and registry.scope("xray_triage") == "series"


def test_an_undecodable_file_is_skipped_with_its_reason(tmp_path: Path, hand_model: Path) -> None:
    files = _films(tmp_path, "hand", 1)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"DICM but not really")
    result = XrayTriage().run(_series([*files, broken], hand_model))
    summary: dict[str, Any] = result.summary
    assert len(summary["films"]) == 1
    assert [s.split(":")[0] for s in summary["skipped"]] == ["broken.dcm"]
    assert "not a readable DICOM file" in summary["skipped"][0]
    assert result.source_headers == ()  # not every file was read


def test_a_series_without_a_decodable_file_is_an_input_error(
    tmp_path: Path, hand_model: Path
) -> None:
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"nothing here")
    series = SeriesInput("1.2.3", "1.2.3.4", "CR", (broken,), "const-triage-1", hand_model)
    with pytest.raises(PipelineInputError, match=r"broken\.dcm: not a readable DICOM file"):
        XrayTriage().run(series)


def test_no_model_says_how_to_get_one(tmp_path: Path) -> None:
    files = _films(tmp_path, "hand", 1)
    with pytest.raises(ModelMissing, match="dicom-node train xray_triage"):
        XrayTriage().run(_series(files, None))
    with pytest.raises(ModelMissing, match="cannot be used"):
        XrayTriage().run(_series(files, tmp_path / "nowhere"))


# -- a trained model -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def triage_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    trained = smoke_triage_model(tmp_path_factory.getbasetemp() / "xray-triage-smoke")
    return Path(trained.folder)


def test_a_trained_model_tells_most_films_apart(tmp_path: Path, triage_model: Path) -> None:
    """Held-out synthetic films (a seed training never saw), one series each: module I right
    on most X-rays and on most non-X-rays, module II well above chance (1 in 14)."""
    films = make_triage_films(90210, 2, size=96, labels=XRAY_TYPE_NAMES)
    films += make_triage_films(90211, 6, size=96, labels=["not_xray"])
    called: dict[bool, list[bool]] = {True: [], False: []}
    right_type = 0
    pipeline = XrayTriage()
    for index, film in enumerate(films):
        path = write_triage_film(
            film, tmp_path / f"{index}.dcm", body_part_examined=None, seed=index
        )
        summary = pipeline.run(_series([path], triage_model, "smoke-1")).summary
        called[film.is_xray].append(summary[SUMMARY.is_xray] is film.is_xray)
        right_type += film.is_xray and summary[SUMMARY.xray_type] == film.label
    assert sum(called[True]) >= 0.75 * len(called[True]), called
    assert sum(called[False]) >= 0.75 * len(called[False]), called
    assert right_type >= 3 / 14 * len(called[True]), f"module II right on {right_type} of 28"


def _relabelled(source: Path, target: Path, modality: str) -> Path:
    """A copy of ``source`` as a proper Part 10 file whose Modality says ``modality``."""
    dataset = pydicom.dcmread(source, force=True)
    if "TransferSyntaxUID" not in getattr(dataset, "file_meta", {}):
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.Modality = modality
    dataset.save_as(target, enforce_file_format=True)
    return target


REAL_IMAGES = {
    "pydicom-data CR chest (RG1, MONOCHROME1)": ("data_store/data/RG1_UNCR.dcm", None),
    "pydicom-data CR extremity, distal tibia (RG3, J2K)": ("data_store/data/RG3_J2KR.dcm", None),
    "deid-data DX (cat thorax)": ("deid_data/data/animals/cat.dcm", None),
    "pydicom-data MR re-labelled CR": ("data_store/data/MR2_UNCR.dcm", "CR"),
    "pydicom-data US (RGB) re-labelled CR": ("data_store/data/US1_UNCR.dcm", "CR"),
    "pydicom-data palette photo (face) as SC": ("data_store/data/OT-PAL-8-face.dcm", "SC"),
    "pydicom-data RGB SC": ("data_store/data/SC_rgb.dcm", "SC"),
}


def test_the_real_images_go_through_triage(
    tmp_path: Path, triage_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real radiographs and real non-radiographs run without error; what each is called is
    printed (the smoke model is trained on synthetic films only: no claim on the calls)."""
    pipeline = XrayTriage()
    for index, (label, (inside, modality)) in enumerate(REAL_IMAGES.items()):
        source = SITE / inside
        if not source.is_file():
            pytest.skip(f"{source} is not installed")
        path = (
            source if modality is None else _relabelled(source, tmp_path / f"{index}.dcm", modality)
        )
        result = pipeline.run(_series([path], triage_model, "smoke-1"))
        summary: dict[str, Any] = result.summary
        assert "skipped" not in summary, summary.get("skipped")
        assert 0.0 <= float(summary[SUMMARY.xray_probability]) <= 1.0  # type: ignore[arg-type]
        assert (summary[SUMMARY.xray_type] is None) == (not summary[SUMMARY.is_xray])
        assert {f.concept for f in result.findings} >= {IS_XRAY}
        assert XRAY_PROBABILITY in {m.concept for m in result.measurements}
        with capsys.disabled():
            print(
                f"\n{label}: decoded as {summary['films'][0]['decoded_as']}, "  # type: ignore[index]
                f"is_xray={summary[SUMMARY.is_xray]} (p={summary[SUMMARY.xray_probability]}), "
                f"type={summary[SUMMARY.xray_type]} (p={summary[SUMMARY.type_probability]}), "
                f"header={summary[SUMMARY.header_body_part]!r} → {summary[SUMMARY.header_type]}, "
                f"disagrees={summary[SUMMARY.header_disagrees]}"
            )
