"""``mura_abnormality`` on real radiographs, end to end through a real Orthanc (issue 23).

The films are every real CR/DX radiograph the installed packages hold (``REAL_STUDIES``):

- pydicom-data's chest CR (``RG1``, Philips, MONOCHROME1, 15 of 16 bits) and extremity CR
  (``RG3``, Fuji, MONOCHROME1, 10 of 16 bits: an ankle, "non-ossifying fibroma of distal
  tibia"), each as the archive holds it — one study, one series — in three transfer
  syntaxes: Explicit VR Little Endian (``UNCR``), JPEG 2000 lossless (``J2KR``) and JPEG
  2000 lossy (``J2KI``); the compressed codestreams are sent untouched and the node decodes
  them itself (OpenJPEG through pylibjpeg);
- deid-data's DX film (``animals/cat.dcm``: Agfa, DX For Presentation, MONOCHROME2, 12 bits,
  2614 × 3072), its own study.

The files keep their own UIDs, so the node's SR must name the very SOP Instance UIDs the
archive holds. Where files share UIDs, the test does what a PACS does with them:

- the three variants of a film share their Study and Series Instance UIDs: they are one
  study of three instances, and the node gives that study one verdict over the three
  views (two of them, UNCR and J2KR, decode to the same pixels and must get the same
  probability; the lossy one may differ a little);
- ``RG*_UNCI`` (the lossy image decompressed) has the SOP Instance UID of ``RG*_J2KI``: it
  is the same instance in another transfer syntax (the test checks that both decode to
  the same pixels), so Orthanc keeps the first copy it got (the JPEG 2000 one, uploaded
  first) and answers "AlreadyStored" for the other; the study holds three instances.

None of these is an upper-extremity film with a MURA Body Part Examined (CHEST, EXTREMITY),
so the node's configuration routes CR and DX films of those body parts to the pipeline
explicitly, as a site that wants them read would.

The model is the ``smoke`` preset's, trained once per test process
(``tests.support.mura.smoke_mura_model``): it knows synthetic metal hardware only, so its
verdicts on these films mean nothing clinically. To exercise both outcomes, the node's
``[pipeline_options.mura_abnormality] threshold`` (a site setting) is put in the widest gap
between the studies' probabilities computed here beforehand on eager torch: the study
above it must come back abnormal (an SR, a heat-map SC per view at or above the threshold
and a Key Object Selection), those below normal (an SR and the top view's SC, no KOS).
Every object Orthanc holds afterwards in a source study is checked with ``dciodvfy``.

Codecs: pylibjpeg-openjpeg (and Pillow) decode JPEG 2000 here; the last test shows what
the pipeline reports where no JPEG 2000 decoder is installed (a clear reason per film,
kept in the results log's summary, and an input error naming the file when no view is
left), instead of a crash.
"""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000, JPEG2000Lossless

from pipelines import SeriesInput, StudyInput
from pipelines.errors import PipelineInputError
from pipelines.film_io import read_film
from pipelines.mura_abnormality import MuraAbnormality
from tests.integration.node_process import NodeProcess
from tests.integration.test_orthanc_results import deliveries, point_at, wait_all_sent
from tests.peers import OrthancProcess, dciodvfy, require_tool, wait_until
from tests.support.mura import smoke_mura_model
from training.mura_abnormality.train import TrainedModel

VERSION = "smoke-1"
CR, DX = "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1"
SR_CLASS, SC_CLASS, KOS_CLASS = (
    "1.2.840.10008.5.1.4.1.1.88.33",
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.88.59",
)
VIEW_PROBABILITY = "Probability of an abnormal view"
STUDY_PROBABILITY = "Probability of an abnormal study"
#: Largest accepted difference between a probability in the SR (4 decimals; the node may run
#: the network on ONNX Runtime, within 1e-4 of torch) and the one computed here on torch.
PROBABILITY_TOLERANCE = 2.5e-4

#: name → (package, files sent in this order, the duplicate instance uploaded after them).
REAL_STUDIES: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "chest-CR": (
        "data_store",
        ("data/RG1_UNCR.dcm", "data/RG1_J2KR.dcm", "data/RG1_J2KI.dcm"),
        "data/RG1_UNCI.dcm",
    ),
    "extremity-CR": (
        "data_store",
        ("data/RG3_UNCR.dcm", "data/RG3_J2KR.dcm", "data/RG3_J2KI.dcm"),
        "data/RG3_UNCI.dcm",
    ),
    "cat-DX": ("deid_data", ("data/animals/cat.dcm",), None),
}

ROUTES = [
    # What a site routes to MURA: upper-extremity CR/DX films...
    {
        "name": "upper-extremity",
        "pipelines": ["mura_abnormality"],
        "modality": ["CR", "DX"],
        "body_part": ["ELBOW", "FINGER", "FOREARM", "HAND", "HUMERUS", "SHOULDER", "WRIST"],
        "destinations": ["orthanc"],
    },
    # ...and, here, the real films at hand, whose Body Part Examined is not one of those.
    {
        "name": "real-films",
        "pipelines": ["mura_abnormality"],
        "modality": ["CR", "DX"],
        "body_part": ["CHEST", "EXTREMITY"],
        "sop_class_uid": [CR, DX],
        "destinations": ["orthanc"],
    },
]


@dataclass(frozen=True)
class RealStudy:
    name: str
    files: tuple[Path, ...]
    duplicate: Path | None
    study_instance_uid: str
    sop_instance_uids: tuple[str, ...]
    transfer_syntaxes: tuple[str, ...]


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # never pydicom.data's downloader
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations)))


def real_studies() -> list[RealStudy]:
    studies = []
    for name, (package, inside, duplicate) in REAL_STUDIES.items():
        root = package_folder(package)
        files = tuple(root / f for f in inside)
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        (study_uid,) = {str(h.StudyInstanceUID) for h in headers}
        studies.append(
            RealStudy(
                name=name,
                files=files,
                duplicate=root / duplicate if duplicate else None,
                study_instance_uid=study_uid,
                sop_instance_uids=tuple(str(h.SOPInstanceUID) for h in headers),
                transfer_syntaxes=tuple(str(h.file_meta.TransferSyntaxUID) for h in headers),
            )
        )
    return studies


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return smoke_mura_model(tmp_path_factory.getbasetemp() / "mura-smoke")


def view_probabilities(trained: TrainedModel, studies: list[RealStudy]) -> dict[str, float]:
    """P(abnormal) of each real film on eager torch, by SOP Instance UID."""
    from pipelines.mura_abnormality.model import load_model
    from pipelines.mura_abnormality.preprocess import network_input

    model = load_model(trained.folder, runtime="torch")
    found = {}
    for study in studies:
        for path, uid in zip(study.files, study.sop_instance_uids, strict=True):
            batch = network_input(read_film(path).display, model.spec)[None]
            found[uid] = float(model.probabilities(batch)[0])
    return found


def threshold_between(probabilities: list[float]) -> float:
    """The middle of the widest gap between the sorted study probabilities."""
    ordered = sorted(probabilities)
    gap, low = max((b - a, a) for a, b in zip(ordered, ordered[1:], strict=False))
    assert gap > 0.01, f"the studies' probabilities {ordered} are too close to split"
    return round(low + gap / 2, 4)


def walk(items: Any) -> Iterator[Any]:
    for item in items:
        yield item
        yield from walk(item.get("ContentSequence", []))


def sr_view_probabilities(report: pydicom.Dataset) -> dict[str, float]:
    """Each measurement group's view probability, by the SOP Instance UID it is measured on."""
    found: dict[str, float] = {}
    for group in walk(report.ContentSequence):
        children = list(group.get("ContentSequence", []))
        values = [
            float(c.MeasuredValueSequence[0].NumericValue)
            for c in children
            if c.ValueType == "NUM" and c.ConceptNameCodeSequence[0].CodeMeaning == VIEW_PROBABILITY
        ]
        images = [
            c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            for c in children
            if c.ValueType == "IMAGE"
        ]
        if values:
            assert len(values) == 1 and len(images) == 1, "one view and its image per group"
            found[str(images[0])] = values[0]
    return found


def sr_value(report: pydicom.Dataset, meaning: str) -> Any:
    for item in walk(report.ContentSequence):
        if item.ConceptNameCodeSequence[0].CodeMeaning != meaning:
            continue
        if item.ValueType == "NUM":
            return float(item.MeasuredValueSequence[0].NumericValue)
        if item.ValueType == "CODE":
            return item.ConceptCodeSequence[0].CodeMeaning
    raise AssertionError(f"{meaning!r} is not in the SR")


def evidence(dataset: pydicom.Dataset) -> set[str]:
    return {
        str(item.ReferencedSOPInstanceUID)
        for study in dataset.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }


def orthanc_objects(orthanc: OrthancProcess, study_instance_uid: str) -> list[pydicom.Dataset]:
    (study_id,) = orthanc.find("Study", {"StudyInstanceUID": study_instance_uid})
    return [
        pydicom.dcmread(io.BytesIO(orthanc.rest("GET", f"/instances/{i['ID']}/file")))
        for i in orthanc.rest("GET", f"/studies/{study_id}/instances")
    ]


@pytest.mark.peers
@pytest.mark.timeout(300)
def test_real_cr_and_dx_films_come_back_as_valid_sr_sc_and_kos_in_their_studies(
    trained: TrainedModel, tmp_path: Path
) -> None:
    require_tool("Orthanc")
    require_tool("dciodvfy")
    studies = real_studies()
    expected_views = view_probabilities(trained, studies)
    study_p = {
        s.name: float(np.mean([expected_views[u] for u in s.sop_instance_uids])) for s in studies
    }
    threshold = threshold_between(list(study_p.values()))
    abnormal = {name for name, p in study_p.items() if p >= threshold}
    assert abnormal and abnormal != set(study_p), "both outcomes must be exercised"
    close = {u: p for u, p in expected_views.items() if abs(p - threshold) < 1e-3}
    assert not close, f"views too close to the threshold {threshold} to predict: {close}"
    expected_outputs = {
        s.name: 1  # the SR
        + (
            sum(expected_views[u] >= threshold for u in s.sop_instance_uids) + 1  # SCs, KOS
            if s.name in abnormal
            else 1  # the top view's SC
        )
        for s in studies
    }

    node = NodeProcess(
        tmp_path / "node",
        workers=1,
        routes=ROUTES,
        extra_pipelines={},
        overrides={
            "delivery": {"check_seconds": 0.2, "first_retry_seconds": 0.3},
            "pipeline_options": {"mura_abnormality": {"threshold": threshold}},
        },
    )
    orthanc = OrthancProcess(
        modalities={"node": [node.ae_title, "127.0.0.1", node.port]},
        workdir=tmp_path / "orthanc",
        graceful_stop=False,
    )
    with orthanc:
        point_at(node, orthanc.dicom_port, orthanc.aet)
        imported = node.cli("models", "import", str(trained.folder), "--activate")
        assert imported.returncode == 0, imported.stderr
        orthanc_studies = []
        for study in studies:
            answers = [orthanc.upload(f) for f in study.files]
            assert {a["Status"] for a in answers} == {"Success"}
            orthanc_studies.append(answers[0]["ParentStudy"])
            if study.duplicate is not None:
                # The same instance decompressed: the same pixels, already stored.
                twin = study.files[study.sop_instance_uids.index(sop_uid(study.duplicate))]
                assert np.array_equal(read_film(study.duplicate).display, read_film(twin).display)
                assert orthanc.upload(study.duplicate)["Status"] == "AlreadyStored"
        assert orthanc.instance_count() == sum(len(s.files) for s in studies)
        with node:
            orthanc.store_to_modality("node", orthanc_studies)
            wait_until(
                lambda: node.scalar("select count(*) from jobs where state = 'done'") == 3,
                120,
                message=lambda: f"{node.rows('select * from jobs')}\n{node.describe_logs()}",
            )
            wait_all_sent(node, sum(expected_outputs.values()), timeout=60)
            received = {
                r["sop_instance_uid"]: r["transfer_syntax_uid"]
                for r in node.rows("select sop_instance_uid, transfer_syntax_uid from instances")
            }
            results = {
                r["study_instance_uid"]: r["summary"]
                for r in node.rows("select study_instance_uid, summary from results")
            }
            back = {s.name: orthanc_objects(orthanc, s.study_instance_uid) for s in studies}
    assert all(r["state"] == "sent" for r in deliveries(node))

    for study in studies:
        # The node decoded what the archive sent, in the archive's transfer syntax.
        for uid, syntax in zip(study.sop_instance_uids, study.transfer_syntaxes, strict=True):
            assert received[uid] == syntax, f"{study.name}: {uid} arrived transcoded"
        summary = results[study.study_instance_uid]
        if isinstance(summary, str):  # SQLite's JSON column, read with plain SQL
            summary = json.loads(summary)
        assert "skipped" not in summary, summary.get("skipped")
        verdict = "abnormal" if study.name in abnormal else "normal"
        assert summary["verdict"] == verdict

        objects = back[study.name]
        sources = [o for o in objects if o.SOPInstanceUID in study.sop_instance_uids]
        outputs = [o for o in objects if o.SOPInstanceUID not in study.sop_instance_uids]
        assert len(sources) == len(study.files)
        assert len(outputs) == expected_outputs[study.name], [o.Modality for o in outputs]
        assert {str(o.StudyInstanceUID) for o in outputs} == {study.study_instance_uid}
        by_class: dict[str, list[pydicom.Dataset]] = {}
        for output in outputs:
            by_class.setdefault(str(output.SOPClassUID), []).append(output)
        (report,) = by_class[SR_CLASS]
        captures = by_class[SC_CLASS]
        selections = by_class.get(KOS_CLASS, [])

        # The SR: the verdict, the study's probability, one probability per real instance.
        assert sr_value(report, "Finding") == verdict.capitalize()
        assert sr_value(report, STUDY_PROBABILITY) == pytest.approx(
            study_p[study.name], abs=PROBABILITY_TOLERANCE
        )
        views = sr_view_probabilities(report)
        assert set(views) == set(study.sop_instance_uids)
        assert evidence(report) == set(study.sop_instance_uids)
        for uid in study.sop_instance_uids:
            assert views[uid] == pytest.approx(expected_views[uid], abs=PROBABILITY_TOLERANCE)
        if len(study.files) == 3:  # UNCR and J2KR: the same pixels, the same probability
            assert views[study.sop_instance_uids[0]] == views[study.sop_instance_uids[1]]

        # The heat maps: each on a real view; the KOS: the views behind an abnormal verdict.
        pictured = [str(c.SourceImageSequence[0].ReferencedSOPInstanceUID) for c in captures]
        assert set(pictured) <= set(study.sop_instance_uids)
        if study.name in abnormal:
            driving = {u for u in study.sop_instance_uids if expected_views[u] >= threshold}
            assert set(pictured) == driving
            (selection,) = selections
            assert evidence(selection) == driving
        else:
            assert len(pictured) == 1 and selections == []
            top = max(study.sop_instance_uids, key=lambda u: expected_views[u])
            if len(study.files) == 1:
                assert pictured == [top]

        for output in outputs:
            path = tmp_path / "back" / study.name / f"{output.SOPInstanceUID}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            output.save_as(path)
            errors, warnings = dciodvfy(path)
            print(
                f"\n{study.name} {output.Modality} ({output.SOPClassUID}): dciodvfy "
                f"{len(errors)} error(s), {len(warnings)} warning(s)"
            )
            assert errors == [], f"{study.name} {output.Modality}: {errors}"
        print(
            f"{study.name}: p = {study_p[study.name]:.4f} at threshold {threshold:.4f} → "
            f"{verdict}; {len(captures)} SC, {len(selections)} KOS"
        )


def test_without_a_jpeg_2000_decoder_the_pipeline_names_the_films_it_could_not_read(
    trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no JPEG 2000 decoder is installed (pylibjpeg-openjpeg, Pillow and GDCM all
    missing), a study's JPEG 2000 films are left out with the decoder's reason in the
    result's summary (the results log's), the others are read; a study of JPEG 2000 films
    only is an input error naming them, which the worker records on the job (not retried)."""
    (chest, *_) = real_studies()
    for syntax in (JPEG2000, JPEG2000Lossless):
        decoder = get_decoder(syntax)
        monkeypatch.setattr(decoder, "_available", {})
        monkeypatch.setattr(
            decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg-openjpeg",), "gdcm": ("gdcm",)}
        )

    def study_of(files: tuple[Path, ...]) -> StudyInput:
        header = pydicom.dcmread(files[0], stop_before_pixels=True)
        series = SeriesInput(
            study_instance_uid=str(header.StudyInstanceUID),
            series_instance_uid=str(header.SeriesInstanceUID),
            modality="CR",
            files=files,
            model_version=VERSION,
            model_dir=trained.folder,
        )
        return StudyInput(series.study_instance_uid, (series,), VERSION, trained.folder)

    pipeline = MuraAbnormality(runtime="torch", heat_maps=False)
    result = pipeline.run(study_of(chest.files))
    views = result.summary["views"]
    assert isinstance(views, list)
    assert [v["sop_instance_uid"] for v in views] == [chest.sop_instance_uids[0]]
    skipped = result.summary["skipped"]
    assert isinstance(skipped, list) and len(skipped) == 2
    for line, path in zip(skipped, chest.files[1:], strict=True):
        assert path.name in line and "cannot be decoded" in line, line

    with pytest.raises(PipelineInputError, match="RG1_J2KR.dcm: the pixel data cannot be decoded"):
        pipeline.run(study_of(chest.files[1:]))
