"""Workers keep freed heap for the next film (``worker_keep_freed_mb``), so a film's large
arrays are not mapped and faulted in page by page again for every job."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from dicom_node.jobs.worker import keep_freed_memory
from dicom_node.settings import NodeSettings

# Allocates and frees a 48 MB array five times and prints the minor page faults of the
# last four rounds: with glibc's defaults each round maps the block afresh and faults it
# in again, with freed memory kept it reuses the pages of the first.
_FAULTS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from dicom_node.jobs.worker import keep_freed_memory
    applied = keep_freed_memory(int(sys.argv[1]))
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(48 << 20, dtype=np.uint8)
    before = faults()
    for _ in range(4):
        block = np.ones(48 << 20, dtype=np.uint8)
        del block
    print(applied, faults() - before)
    """
)


def faults_per_round(megabytes: int, env: dict[str, str] | None = None) -> tuple[bool, float]:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, str(megabytes)],
        capture_output=True,
        text=True,
        check=True,
        env=run_env,
        timeout=120,
    )
    applied, faults = done.stdout.split()
    return applied == "True", int(faults) / 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_kept_memory_is_reused_instead_of_faulted_in_again() -> None:
    default = NodeSettings.model_fields["worker_keep_freed_mb"].default
    applied, kept = faults_per_round(default)
    not_applied, fresh = faults_per_round(0)
    assert applied and not not_applied
    # glibc's defaults: the block is faulted in every round, at least once per page
    # (2 MB where numpy asks for transparent huge pages, 4 kB otherwise).
    assert fresh >= (48 << 20) / (2 << 20)
    assert kept <= fresh / 10


def test_zero_or_malloc_variables_leave_malloc_alone() -> None:
    assert keep_freed_memory(0) is False
    applied, _ = faults_per_round(256, {"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert applied is False


def test_the_setting_is_validated() -> None:
    assert NodeSettings(worker_keep_freed_mb=0).worker_keep_freed_mb == 0
    with pytest.raises(ValueError, match="worker_keep_freed_mb"):
        NodeSettings(worker_keep_freed_mb=-1)
