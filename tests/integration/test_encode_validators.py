"""Every object the encoder makes passes dicom3tools' ``dciodvfy`` and dcmtk's ``dsrdump``.

For each source set (pydicom's CT and MR slices, a synthetic DX hand film series) the
demo result is encoded — one SR with measurements and findings and one SC image of each
kind — and each file is validated. ``dciodvfy`` must report no errors; its warnings are
printed (run with ``-s`` to see them). ``dsrdump`` must parse every SR.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dicom_node.encode import DeviceIdentity, encode_result, write_output
from tests.peers import dciodvfy, require_tool
from tests.support.datasets import SOURCE_SETS
from tests.support.pipelines import SC_KINDS, demo_result

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

DEVICE = DeviceIdentity(ae_title="DICOM_NODE", software_version="0.1.0")
UID_ROOT = "1.2.826.0.1.3680043.8.498.99"
OUTPUT_KINDS = ["sr", *(f"sc-{name}" for name in SC_KINDS.values())]


def _encode(source_set: str, folder: Path) -> dict[str, Path]:
    """The demo result's objects for one source set, written; by output kind."""
    sources = SOURCE_SETS[source_set]()
    outputs = encode_result(demo_result(sources, "3"), sources, device=DEVICE, uid_root=UID_ROOT)
    assert [o.kind for o in outputs] == ["sr"] + ["sc"] * len(SC_KINDS)
    return {kind: write_output(o, folder) for kind, o in zip(OUTPUT_KINDS, outputs, strict=True)}


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
@pytest.mark.parametrize("source_set", sorted(SOURCE_SETS))
def test_dciodvfy_finds_no_errors(source_set: str, kind: str, tmp_path: Path) -> None:
    require_tool("dciodvfy")
    path = _encode(source_set, tmp_path)[kind]
    errors, warnings = dciodvfy(path)
    print(f"\ndciodvfy {source_set} {kind}: {len(errors)} error(s), {len(warnings)} warning(s)")
    for line in warnings:
        print(f"  {line}")
    assert errors == [], "\n".join(errors)


@pytest.mark.parametrize("source_set", sorted(SOURCE_SETS))
def test_dsrdump_parses_every_sr(source_set: str, tmp_path: Path) -> None:
    dsrdump = require_tool("dsrdump")
    path = _encode(source_set, tmp_path)["sr"]
    result = subprocess.run(
        [dsrdump, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr or result.stdout
    assert "Imaging Measurement Report" in result.stdout
    assert "Comprehensive SR Document" in result.stdout
    assert "reporting_demo" in result.stdout  # algorithm name and device model name
