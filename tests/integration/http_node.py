"""An in-process node with ``[http]`` enabled on free ports, for the HTTP side's tests.

``http_node(tmp_path, monkeypatch, **overrides)`` starts a ``Node`` (receiver, scheduler,
HTTP server; no worker processes: ``run_job`` runs the queued job in this process with
``reporting_demo``, which writes an SR with a finding and four SC images). Results go to
``nowhere``, a destination with nothing listening, so deliveries end dead after one try.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from dicom_node.flow import Node
from tests.integration.conftest import LOCALHOST, _clear_node_environment, build_node_settings
from tests.peers import wait_until

READ_TOKEN = "read-token-for-tests"
WRITE_TOKEN = "write-token-for-tests"
PIPELINES = {"reporting_demo": "tests.support.pipelines:ReportingDemo"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpNode:
    node: Node

    @property
    def url(self) -> str:
        assert self.node.http is not None
        return f"http://{LOCALHOST}:{self.node.http.port}"

    @property
    def port(self) -> int:
        return self.node.receiver.port

    def get(
        self, path: str, token: str | None = READ_TOKEN, accept: str = "text/html", **headers: str
    ) -> Reply:
        return self.request("GET", path, token=token, accept=accept, **headers)

    def request(
        self,
        method: str,
        path: str,
        token: str | None = READ_TOKEN,
        accept: str = "*/*",
        **headers: str,
    ) -> Reply:
        request = urllib.request.Request(self.url + path, method=method)
        request.add_header("Accept", accept)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())

    def scalar(self, sql: str) -> Any:
        with self.node.parts.engine.connect() as conn:
            return conn.execute(text(sql)).scalar()

    def run_job(self) -> None:
        """Wait for the study to become stable and its job to be queued; run it here."""
        wait_until(
            lambda: self.scalar("select count(*) from jobs where state = 'queued'") == 1,
            timeout=20,
            message="no job queued",
        )
        outcome = self.node.parts.worker().run_once()
        assert outcome is not None and outcome.state == "done", outcome

    def metrics(self) -> dict[str, float]:
        """``name{labels}`` → value of every sample of ``/metrics``."""
        reply = self.get("/metrics", accept="text/plain")
        assert reply.status == 200, reply.text
        samples = {}
        for line in reply.text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent): labels in any order."""
    for key, value in samples.items():
        found, _, rest = key.partition("{")
        if found != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if have == labels:
            return value
    return 0.0


def start_http_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> HttpNode:
    _clear_node_environment(monkeypatch)
    monkeypatch.setenv("DNODE_TEST_READ", READ_TOKEN)
    monkeypatch.setenv("DNODE_TEST_WRITE", WRITE_TOKEN)
    values: dict[str, Any] = {
        "http": {
            "enabled": True,
            "port": 0,
            "token_env": "DNODE_TEST_READ",
            "write_token_env": "DNODE_TEST_WRITE",
        },
        "extra_pipelines": PIPELINES,
        "destinations": [
            {"name": "nowhere", "host": LOCALHOST, "port": free_port(), "ae_title": "NOWHERE"}
        ],
        "routes": [
            {
                "name": "ct",
                "pipelines": ["reporting_demo"],
                "modality": ["CT"],
                "destinations": ["nowhere"],
            }
        ],
        "delivery": {"max_attempts": 1, "check_seconds": 0.2, "timeout_seconds": 2},
        "allowed_callers": [{"ae_title": "TEST_SCU"}],
        "workers": 0,
    }
    values.update(overrides)
    node = Node(build_node_settings(tmp_path, **values))
    node.start()
    return HttpNode(node)
