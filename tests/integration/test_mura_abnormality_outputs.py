"""Every object made of a ``mura_abnormality`` result passes dicom3tools' ``dciodvfy``: the
SR (finding, study and view probabilities), the RGB heat-map SCs and the Key Object
Selection of an abnormal study, from CR MONOCHROME1 and DX sources; ``dsrdump`` parses the SR."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

from dicom_node.output.encode import encode_result, write_output
from pipelines.mura_abnormality import MuraAbnormality
from tests.peers import dciodvfy, require_tool
from tests.support.mura import smoke_mura_model, study_input
from tests.support.output import DEVICE, UID_ROOT, WHEN
from training.synthetic.msk_films import make_msk_study, write_msk_study

pytestmark = [pytest.mark.peers, pytest.mark.timeout(300)]


@pytest.mark.parametrize(
    ("modality", "photometric"), [("DX", "MONOCHROME2"), ("CR", "MONOCHROME1")]
)
def test_dciodvfy_finds_no_errors_in_sr_sc_and_kos(
    modality: str, photometric: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    require_tool("dciodvfy")
    trained = smoke_mura_model(tmp_path_factory.getbasetemp() / "mura-smoke")
    study = make_msk_study(41, region="elbow", abnormality="hardware", views=2, size=384)
    written = write_msk_study(
        tmp_path / "in", study, modality=modality, photometric=photometric, series_per_view=True
    )
    inputs = study_input(written, trained.folder, "smoke-1")
    result = MuraAbnormality(runtime="torch", threshold=0.0).run(inputs)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in inputs.files]
    outputs = encode_result(
        result,
        headers,
        device=DEVICE,
        uid_root=UID_ROOT,
        created_at=WHEN,
        source_key=f"study:{inputs.study_instance_uid}",
    )
    assert sorted(o.kind for o in outputs) == ["kos", "sc", "sc", "sr"]
    for output in outputs:
        path = write_output(output, tmp_path / "out")
        errors, warnings = dciodvfy(path)
        print(
            f"\ndciodvfy {modality} {output.kind}: {len(errors)} error(s), {len(warnings)} warning(s)"
        )
        for line in warnings:
            print("  ", line)
        assert errors == [], f"{output.kind}: {errors}"
        if output.kind == "sr":
            dump = subprocess.run(
                [require_tool("dsrdump"), str(path)], capture_output=True, text=True, check=True
            )
            assert "Abnormal" in dump.stdout and "Probability of an abnormal view" in dump.stdout
