"""ct_body_part end to end: Orthanc sends a CT study of three series — a normal
chest–abdomen–pelvis scan, the same scan with its pixel data in reverse order, and the
normal scan again as one multi-frame image (Legacy Converted Enhanced CT) — to the node
(real receiver, real worker), and receives for each series an SR and an SC (the score
plot), in the CT's study, each passing dciodvfy with 0 errors.

The model is a real one, trained with the ``smoke`` preset on synthetic phantoms (once
per test process, about a minute on 2 cores) and registered with ``import_model``. The SR
of the normal series names the chest, abdomen and pelvis as finding sites; the reversed
series' SR says the scan direction is not monotonic; the results log keeps one score per
slice of each series. The multi-frame image gets the normal series' scores, frame by frame
(one logged score per frame, with its frame number), and the same zones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_node.db import migrate
from dicom_node.jobs.model_registry import import_model
from tests.integration.node_process import NodeProcess
from tests.integration.test_orthanc_results import (
    orthanc_study_objects,
    point_at,
    send_study,
    sr_values,
    wait_all_sent,
    walk,
)
from tests.peers import OrthancProcess, dciodvfy, require_tool
from tests.support.models import smoke_ubr_model
from training.ct_body_part.data import PHANTOM_FOV_MM
from training.synthetic.ct_phantoms import (
    WrittenSeries,
    make_phantom,
    random_scan,
    write_ct_series,
    write_multi_frame_ct,
)

# The hand_orientation test's markers; the timeout also covers training the smoke model
# when this test is the first in the process to need it.
pytestmark = [pytest.mark.peers, pytest.mark.timeout(600)]

ROUTES = [
    {
        "name": "ct",
        "pipelines": ["ct_body_part"],
        "modality": ["CT"],
        "destinations": ["orthanc"],
    }
]
PHANTOM_SEED = 4242
SLICES = 40
SIZE = 256
FINDING_SITE = ("363698007", "SCT")
ZONE_SITES = {
    ("816094009", "SCT"): "Chest",
    ("818981001", "SCT"): "Abdomen",
    ("816092008", "SCT"): "Pelvis",
}
OUTPUTS_PER_SERIES = 2  # an SR and the score plot as SC


@pytest.fixture(scope="session")
def ubr_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The root the pipeline's unit tests use too: one training per test process.
    return smoke_ubr_model(tmp_path_factory.getbasetemp() / "ubr-models")


def write_two_series(folder: Path) -> tuple[WrittenSeries, WrittenSeries]:
    """A normal head-first chest–abdomen–pelvis series, and in the same study the same scan
    with its slices' pixel data in reverse order (the geometry unchanged)."""
    phantom = make_phantom(PHANTOM_SEED)
    scan = random_scan(
        phantom,
        np.random.default_rng(PHANTOM_SEED),
        region="chest_abdomen_pelvis",
        spacing_mm=1.0,
        max_slices=SLICES,
        head_first=True,
    )
    # The field of view the model was trained on (write_ct_study's default too).
    spacing = PHANTOM_FOV_MM / SIZE
    normal = write_ct_series(folder / "normal", phantom, scan, size=SIZE, pixel_spacing=spacing)
    flipped = write_ct_series(
        folder / "reversed",
        phantom,
        scan,
        size=SIZE,
        pixel_spacing=spacing,
        anatomy_order="reversed",
        study_instance_uid=normal.study_instance_uid,
        series_number=2,
        series_description="Synthetic CT phantom, anatomy reversed",
    )
    return normal, flipped


def finding_sites(sr: pydicom.Dataset) -> set[tuple[str, str]]:
    """(code value, scheme) of every Finding Site in the SR's content tree."""
    found = set()
    for item in walk(sr.ContentSequence):
        name = item.ConceptNameCodeSequence[0]
        if (name.CodeValue, name.CodingSchemeDesignator) == FINDING_SITE:
            value = item.ConceptCodeSequence[0]
            found.add((str(value.CodeValue), str(value.CodingSchemeDesignator)))
    return found


def target_regions(sr: pydicom.Dataset) -> set[str]:
    """The code meanings of every Target Region (DCM 123014) finding in the SR."""
    found = set()
    for item in walk(sr.ContentSequence):
        name = item.ConceptNameCodeSequence[0]
        if (name.CodeValue, name.CodingSchemeDesignator) == ("123014", "DCM"):
            found.add(str(item.ConceptCodeSequence[0].CodeMeaning))
    return found


def test_a_ct_study_from_orthanc_comes_back_with_zones_plots_and_anomaly_flags(
    tmp_path: Path, ubr_model: Path
) -> None:
    require_tool("Orthanc")
    require_tool("dciodvfy")
    normal, flipped = write_two_series(tmp_path / "ct")
    assert len(normal.files) == len(flipped.files) >= SLICES - 2
    multi_frame = write_multi_frame_ct(normal, tmp_path / "ct" / "multi-frame" / "image.dcm")
    multi_frame_series = str(
        pydicom.dcmread(multi_frame, stop_before_pixels=True).SeriesInstanceUID
    )

    node = NodeProcess(
        tmp_path / "node",
        workers=1,
        routes=ROUTES,
        extra_pipelines={},
        overrides={"delivery": {"check_seconds": 0.2, "first_retry_seconds": 0.3}},
    )
    orthanc = OrthancProcess(
        modalities={"node": [node.ae_title, "127.0.0.1", node.port]},
        workdir=tmp_path / "orthanc",
        graceful_stop=False,
    )
    with orthanc:
        point_at(node, orthanc.dicom_port, orthanc.aet)
        engine = node.engine()
        migrate.upgrade(engine)
        card = import_model(engine, ubr_model, node.workdir / "models", activate=True)
        with node:
            orthanc_study = send_study(orthanc, [*normal.files, *flipped.files, multi_frame])
            wait_all_sent(node, 3 * OUTPUTS_PER_SERIES, timeout=240)
            objects = orthanc_study_objects(orthanc, orthanc_study)
            outputs = node.rows(
                "select o.kind, o.sop_instance_uid, r.series_instance_uid, r.model_version "
                "from outputs o join results r on r.id = o.result_id"
            )
            slice_scores = node.rows(
                "select r.series_instance_uid as series, count(*) as n, "
                "count(distinct m.slice_index) as distinct_slices, "
                "count(distinct m.frame_number) as distinct_frames "
                "from measurements m join results r on r.id = m.result_id "
                "where m.slice_index is not null group by r.series_instance_uid"
            )
            # Logged in body order (superior first), one row per slice.
            body_order_scores = node.rows(
                "select r.series_instance_uid as series, m.value, m.frame_number "
                "from measurements m join results r on r.id = m.result_id "
                "where m.concept_code = '99DCMNODE:UBR-SCORE' order by m.id"
            )

    assert {o["model_version"] for o in outputs} == {card.version}
    by_uid = {o.SOPInstanceUID: o for o in objects}
    results: dict[tuple[str, str], pydicom.Dataset] = {}
    for output in outputs:
        assert output["sop_instance_uid"] in by_uid, f"{output} not in Orthanc"
        results[(output["series_instance_uid"], output["kind"])] = by_uid[
            output["sop_instance_uid"]
        ]
    series = (normal.series_instance_uid, flipped.series_instance_uid, multi_frame_series)
    assert sorted(results) == sorted((s, kind) for s in series for kind in ("sc", "sr"))
    assert {o.Modality for o in objects} == {"CT", "SR", "OT"}
    assert {o.StudyInstanceUID for o in objects} == {normal.study_instance_uid}

    errors = {}
    for (source, kind), dataset in results.items():
        path = tmp_path / f"{source[-12:]}-{kind}.dcm"
        dataset.save_as(path)
        errors[f"{kind} of series …{source[-12:]}"] = dciodvfy(path)[0]
        if kind == "sc":  # the score plot: a colour picture, annotated
            assert dataset.PhotometricInterpretation == "RGB"
            assert dataset.BurnedInAnnotation == "YES"

    normal_sr = results[(normal.series_instance_uid, "sr")]
    # Every zone the SR names as a Target Region carries its coded anatomy, and only those.
    # The CI smoke model is coarse (64² input, 300 iterations): it finds the chest and the
    # abdomen of this subject but may put its pelvis below the pelvis threshold, so all
    # three zones are required only of the unit test's series and of trained models.
    regions = target_regions(normal_sr)
    assert {"Chest", "Abdomen"} <= regions, regions
    expected_sites = {site for site, meaning in ZONE_SITES.items() if meaning in regions}
    assert finding_sites(normal_sr) == expected_sites, finding_sites(normal_sr)
    assert sr_values(normal_sr)["Scan direction not monotonic"] == "Absent"
    flipped_sr = results[(flipped.series_instance_uid, "sr")]
    assert sr_values(flipped_sr)["Scan direction not monotonic"] == "Present"

    counts = {row["series"]: row for row in slice_scores}
    for written in (normal, flipped):
        row = counts[written.series_instance_uid]
        assert row["n"] == row["distinct_slices"] == len(written.files), row
        assert row["distinct_frames"] == 0, row  # single-frame files: no frame numbers

    # The multi-frame image: one score per frame of its one instance, the normal series'
    # scores in the same body order, and the same zones in its SR.
    row = counts[multi_frame_series]
    assert (row["n"], row["distinct_slices"], row["distinct_frames"]) == (
        len(normal.files),
        1,
        len(normal.files),
    ), row
    scores: dict[str, list[float]] = {}
    for item in body_order_scores:
        scores.setdefault(item["series"], []).append(item["value"])
    assert scores[multi_frame_series] == scores[normal.series_instance_uid]
    multi_frame_sr = results[(multi_frame_series, "sr")]
    assert target_regions(multi_frame_sr) == regions
    assert finding_sites(multi_frame_sr) == expected_sites

    # Last, so that a failure here still shows that everything above held.
    failed = {what: found for what, found in errors.items() if found}
    assert not failed, "\n".join(f"{what}: {found}" for what, found in failed.items())
