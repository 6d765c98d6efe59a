"""``dicom-node serve`` with ``[http]``: the HTTP side starts and stops with the node
process, and a public address without a token is refused before anything starts."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.http_node import READ_TOKEN
from tests.integration.node_process import REPO_ROOT, NodeProcess, to_toml
from tests.peers import free_port, wait_until

pytestmark = pytest.mark.timeout(60)


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def test_serve_runs_the_http_side_with_the_node(tmp_path: Path) -> None:
    port = free_port()
    http = {"enabled": True, "port": port, "token_env": "DNODE_TEST_READ"}
    node = NodeProcess(tmp_path, overrides={"http": http}, env={"DNODE_TEST_READ": READ_TOKEN})
    base = f"http://127.0.0.1:{port}"
    with node:
        wait_until(lambda: _get(base + "/readyz")[0] == 200, timeout=20, message="not ready")
        assert _get(base + "/metrics")[0] == 401
        status, text = _get(base + "/metrics", READ_TOKEN)
        assert status == 200 and "dicom_node_instances_received_total 0.0" in text
    assert _get(base + "/healthz")[0] == 0  # stopped with the node


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    settings = {
        "storage_dir": str(tmp_path / "storage"),
        "database_url": f"sqlite:///{tmp_path / 'node.sqlite'}",
        "http": {"enabled": True, "bind_address": "0.0.0.0", "port": free_port()},
    }
    config.write_text(to_toml(settings))
    done = subprocess.run(
        [sys.executable, "-m", "dicom_node", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=30,
    )
    assert done.returncode != 0
    assert "http.bind_address 0.0.0.0 is not a loopback address" in done.stdout + done.stderr
    assert not (tmp_path / "node.sqlite").exists()
