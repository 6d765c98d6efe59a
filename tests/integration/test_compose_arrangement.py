"""deploy/compose.yaml's arrangement without containers: a study stored into Orthanc goes
to the node the way the compose configuration sends it, and the node's results come back
into Orthanc in the same study.

The two programs run as processes here, with the compose's own files:

* Orthanc: ``deploy/orthanc.compose.json`` (its modality ``dicom-node``, its Lua script
  ``deploy/forward-to-dicom-node.lua``, no login), through ``OrthancProcess``;
* the node: ``dicom-node serve`` with ``deploy/dicom-node.compose.toml`` (its allowlist,
  routes, destination, worker count), its models imported as the compose's ``models``
  service imports them (every folder of ``pipelines/shipped``, ``--activate``).

Only what a container gives differently is replaced (``container_differences``): the
addresses and ports (compose's service names and fixed ports become 127.0.0.1 and free
ports), the folders (the volumes become folders under ``tmp_path``), the Lua script's
path, and the stable period (30 s in the compose file, 1 s here, so the test is quick).
Not covered: the image build, container networking and name resolution, the volumes and
their ownership, the orthancteam/orthanc image's own defaults (deploy/README.md).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.integration.node_process import REPO_ROOT, NodeProcess, make_series, to_toml
from tests.integration.test_orthanc_results import deliveries, orthanc_study_objects
from tests.peers import OrthancProcess, require_tool, wait_until
from training.synthetic.hand_films import write_hand_study

pytestmark = [pytest.mark.peers, pytest.mark.timeout(300)]

DEPLOY = REPO_ROOT / "deploy"
NODE_CONFIG = DEPLOY / "dicom-node.compose.toml"
ORTHANC_CONFIG = DEPLOY / "orthanc.compose.json"
LUA_IN_CONTAINER = "/etc/orthanc-lua/forward-to-dicom-node.lua"
SHIPPED = REPO_ROOT / "pipelines" / "shipped"
#: The compose service names, which are host names on the compose network only.
NODE_SERVICE = "dicom-node"
ORTHANC_SERVICE = "orthanc"


def node_settings_outside_containers(
    node: NodeProcess, orthanc_dicom_port: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The compose's node settings with the container-only values replaced; returns the
    settings and the replaced values (top-level keys) for the test to check."""
    settings = tomllib.loads(NODE_CONFIG.read_text())
    replaced: dict[str, Any] = {
        "bind_address": "127.0.0.1",
        "port": node.port,
        "storage_dir": str(node.storage_dir),
        "database_url": node.db_url,
        "model_dir": str(node.workdir / "models"),
        "outputs_dir": str(node.workdir / "outputs"),
        "stable_after_seconds": 1.0,
        "stable_check_seconds": 0.2,
    }
    assert set(replaced) <= set(settings), "replace only what the compose file sets"
    settings.update(replaced)
    for destination in settings["destinations"]:
        if destination["host"] == ORTHANC_SERVICE:
            destination.update(host="127.0.0.1", port=orthanc_dicom_port)
    return settings, replaced


def orthanc_config_outside_containers(node_port: int) -> dict[str, Any]:
    """The compose's Orthanc configuration with the container-only values replaced (ports
    and folders are chosen by ``OrthancProcess``: free ports, a folder in ``tmp_path``)."""
    config = json.loads(ORTHANC_CONFIG.read_text())
    for key in ("HttpPort", "DicomPort", "StorageDirectory", "IndexDirectory"):
        del config[key]
    node_entry = config["DicomModalities"][NODE_SERVICE]
    assert node_entry["Host"] == NODE_SERVICE
    node_entry.update(Host="127.0.0.1", Port=node_port)
    assert config["LuaScripts"] == [LUA_IN_CONTAINER]
    config["LuaScripts"] = [str(DEPLOY / "forward-to-dicom-node.lua")]
    return config


def _node_instances(node: NodeProcess) -> list[str]:
    if not node.table_exists("instances"):
        return []
    return [r["sop_instance_uid"] for r in node.rows("select sop_instance_uid from instances")]


def test_a_study_stored_into_orthanc_comes_back_with_the_nodes_results(tmp_path: Path) -> None:
    require_tool("Orthanc")
    node = NodeProcess(tmp_path / "node", extra_pipelines={})
    config = orthanc_config_outside_containers(node.port)
    orthanc = OrthancProcess(
        aet=config["DicomAet"],
        workdir=tmp_path / "orthanc",
        extra_config=config,
        graceful_stop=False,
    )
    film = write_hand_study(tmp_path / "films", angle_deg=90.0, seed=3, scale=0.25)
    with orthanc:
        settings, _ = node_settings_outside_containers(node, orthanc.dicom_port)
        node.settings = settings
        node.config_path.write_text(to_toml(settings))
        for folder in sorted(SHIPPED.glob("*/*/")):  # as the compose's models service does
            imported = node.cli("models", "import", str(folder), "--activate")
            assert imported.returncode == 0, imported.stderr
        with node:
            # Stored into Orthanc over REST: Orthanc's Lua script forwards it to the node.
            study_id = orthanc.upload(film.path)["ParentStudy"]
            wait_until(
                lambda: (
                    [d["state"] for d in deliveries(node)] == ["sent"] * 3
                    and len(orthanc.rest("GET", f"/studies/{study_id}/instances")) == 4
                ),
                180,
                message=lambda: f"results missing: {deliveries(node)}\n{node.describe_logs()}",
            )
            # A later instance reaches the node too; the Lua script handles stored
            # instances in order, so by then it has passed over the results: none of
            # them went back to the node.
            marker = make_series(tmp_path / "marker", 1, modality="MR", seed=1)[0]
            orthanc.upload(marker)
            wait_until(lambda: len(_node_instances(node)) >= 2, 60, message=node.describe_logs)
            received = _node_instances(node)
            objects = orthanc_study_objects(orthanc, study_id)

    assert film.sop_instance_uid in received and len(received) == 2
    results = {o.Modality: o for o in objects if o.SOPInstanceUID != film.sop_instance_uid}
    assert sorted(results) == ["OT", "PR", "SR"]
    assert {o.StudyInstanceUID for o in objects} == {film.study_instance_uid}
    assert {o.Manufacturer for o in results.values()} == {"dicom-node"}


def test_only_container_values_are_replaced(tmp_path: Path) -> None:
    """The overrides touch addresses, ports, folders and the stable period, nothing else:
    routes, allowlist, AE titles and worker count are the compose file's."""
    node = NodeProcess(tmp_path / "node", extra_pipelines={})
    settings, replaced = node_settings_outside_containers(node, 4242)
    original = tomllib.loads(NODE_CONFIG.read_text())
    for key, value in original.items():
        if key not in replaced and key != "destinations":
            assert settings[key] == value, key
    assert [{**d, "host": "orthanc"} for d in settings["destinations"]] == original["destinations"]
    config = orthanc_config_outside_containers(node.port)
    compose = json.loads(ORTHANC_CONFIG.read_text())
    for key in ("DicomAet", "AuthenticationEnabled", "DicomAlwaysAllowStore"):
        assert config[key] == compose[key]
    entry = config["DicomModalities"][NODE_SERVICE]
    assert entry["AET"] == settings["ae_title"] == compose["DicomModalities"][NODE_SERVICE]["AET"]
    assert {c["ae_title"] for c in settings["allowed_callers"]} == {compose["DicomAet"]}
