"""A worker killed (SIGKILL) while it holds a job: the job is claimed again after its lease.

Two ways a worker runs: the worker process ``dicom-node serve`` spawns and supervises,
and a separate ``dicom-node worker`` process. In both, the ``sleepy`` test pipeline holds
the job until the worker is killed; a marker file named ``<series uid>.<pid>`` says which
process runs it. The rerun is made fast by the marker folder's ``fast`` file. The job
must end ``done`` on its second attempt, run by another process, with one result row.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from tests.integration.node_process import NodeProcess, make_series
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(120)

LEASE_SECONDS = 2.0
ROUTES = [{"name": "ct-sleepy", "pipelines": ["sleepy"], "modality": ["CT"]}]


def send(port: int, ae_title: str, files: list[Path]) -> None:
    ae = AE(ae_title="WORKER_TEST")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    assert assoc.is_established
    try:
        for path in files:
            status = assoc.send_c_store(dcmread(path))
            assert getattr(status, "Status", None) == 0x0000
    finally:
        assoc.release()
        ae.shutdown()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def markers(folder: Path, series_uid: str) -> list[int]:
    """PIDs of the processes that started the sleepy pipeline on the series, in order."""
    if not folder.exists():
        return []
    found = sorted(folder.glob(f"{series_uid}.*"), key=lambda p: p.stat().st_mtime_ns)
    return [int(p.suffix.lstrip(".")) for p in found]


@pytest.mark.parametrize("worker_kind", ["supervised", "standalone"])
def test_killed_worker_job_is_claimed_again_after_the_lease(
    tmp_path: Path, worker_kind: str
) -> None:
    marker_dir = tmp_path / "markers"
    env = {"SLEEPY_MARKER_DIR": str(marker_dir), "SLEEPY_SECONDS": "60"}
    files = make_series(tmp_path / "send", 3, size=32, seed=3)
    series_uid = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    supervised = worker_kind == "supervised"

    with NodeProcess(
        tmp_path / "node",
        workers=1 if supervised else 0,
        lease_seconds=LEASE_SECONDS,
        routes=ROUTES,
        env=env,
    ) as node:
        standalone = None if supervised else node.start_worker()
        send(node.port, node.ae_title, files)

        first_pid = wait_until(
            lambda: (markers(marker_dir, series_uid) or [None])[0],
            timeout=30,
            message=lambda: f"the sleepy job did not start\n{node.describe_logs()}",
        )
        assert isinstance(first_pid, int)
        (job,) = node.rows("select id, state, attempts, lease_owner from jobs")
        assert (job["state"], job["attempts"]) == ("running", 1)
        assert job["lease_owner"].endswith(f":{first_pid}")

        (marker_dir / "fast").touch()
        if supervised:
            assert node.worker_pids() == [first_pid]
            os.kill(first_pid, signal.SIGKILL)  # just the worker child; the receiver lives
            wait_until(lambda: not alive(first_pid), timeout=10, message="worker survived")
        else:
            assert standalone is not None and standalone.pid == first_pid
            standalone.kill9()
        # The dead worker renews nothing any more: this is when its lease ends.
        lease_end = datetime.fromisoformat(node.scalar("select lease_expires_at from jobs"))
        if not supervised:
            node.start_worker()

        wait_until(
            lambda: node.scalar("select state from jobs") == "done",
            timeout=45,
            message=lambda: (
                f"job not done: {node.rows('select * from jobs')}\n{node.describe_logs()}"
            ),
        )
        assert node.running, "the receiver died with its worker"
        pids = markers(marker_dir, series_uid)
        assert len(pids) == 2 and pids[0] == first_pid and pids[1] != first_pid
        (job,) = node.rows("select * from jobs")
        assert job["attempts"] == 2
        assert job["lease_owner"].endswith(f":{pids[1]}")
        assert job["last_error"] is None
        assert datetime.fromisoformat(job["started_at"]) >= lease_end, (
            "claimed before the lease ran out"
        )
        (result,) = node.rows("select job_id, summary from results")
        assert result["job_id"] == job["id"]
        if supervised:
            assert "starting another" in node.log_text()
            assert node.worker_pids() == [pids[1]]
