"""Ingest benchmark: how fast do storescp, Orthanc, pynetdicom and dicom-node take a corpus in?

    .venv/bin/python benchmarks/ingest.py [--workdir DIR] [--only ct|radiograph]
                                          [--targets T,...] [--repeat N] [--node-cmd CMD]
                                          [--max-pdu N] [--associations N,...] [--images N]
                                          [--node-processes N,...] [--keep]

One run sends each corpus (300 CT slices; 50 DX radiographs; see ``datasets.py``; with
``--images N`` only the first N files of each) with dcmtk ``storescu`` -- all files in one
call per association, TCP_NODELAY=1 -- to four receivers, each started fresh on a free
port for every (corpus, association count, target):

- ``storescp``: dcmtk's storescp (``+xa``), TCP_NODELAY=1 -- the floor; with more than
  one association ``--fork`` (a process per association), as it serves one at a time;
- ``orthanc``: Orthanc with a private SQLite index and storage, TCP_NODELAY=1, and
  ``DicomThreadsCount`` at least the association count (its default is 4);
- ``pynetdicom``: a bare pynetdicom SCP (``_bare_pynetdicom_scp.py``): chunked receive,
  TCP_NODELAY, and a C-STORE handler that only renames the received file into a folder
  -- what pynetdicom itself costs, the ceiling it puts on dicom-node;
- ``dicom-node``: ``.venv/bin/dicom-node serve --config CONFIG.toml`` as a separate
  process (or ``--node-cmd``, where ``{config}`` is replaced by the TOML's path), with
  ``max_associations`` at least the association count.

All four receive with the same maximum PDU, ``--max-pdu`` (default 131072 bytes, the
largest storescp and Orthanc take; the range is theirs, 4096..131072): storescp's
``-pdu``, Orthanc's ``MaximumPduLength``, the bare SCP's and dicom-node's
``maximum_pdu_size`` / ``max_pdu_bytes``. (Before, storescp and Orthanc ran with their
16 KiB default while dicom-node and pynetdicom had 4 MiB.)

``--node-processes 1,2`` (default 1) runs dicom-node once per value, with
``receiver_processes`` set to it: target ``dicom-node`` for 1, ``dicom-node-xN`` for N
(each compared with the other receivers as ``dicom-node`` is).

``--associations 1,4,8`` (default 1) sends the same files split across N simultaneous
associations: N contiguous, near-equal parts of the corpus in order, each sent by its own
``storescu`` process, all started together (``plan_associations``). N is at most
``MAX_ASSOCIATIONS`` (the bare pynetdicom SCP's association limit, pynetdicom's default).

Time is the wall clock from starting the first storescu to the end of the last
(association set-up, every C-STORE and its answer, release). The receiver's CPU time over
the same span (user + system, all its threads and its child processes, from
``/proc/PID/stat``; with ``--node-cmd``, that of the process the command starts) is printed
as ms per image and as a share of the wall clock: a receiver near 100 % of one core is
limited by its own CPU work, one well below it by waiting (for the disk, or for the
senders). The senders' CPU time (every storescu of the run, from ``getrusage`` of this
process's waited-for children) is printed as ms per image too: on a small machine the
senders compete with the receiver for the same cores. Afterwards the arrivals are counted
on the receiver's side: files in storescp's and the bare pynetdicom SCP's folders,
CountInstances from Orthanc's /statistics, rows in dicom-node's ``instances`` table. MB/s
uses the corpus' file sizes in 10^6 bytes.

Results are printed as ASCII tables -- throughput per (corpus, association count), then
dicom-node's images/s divided by each other receiver's and pynetdicom's divided by
Orthanc's, at the same association count -- and written to
``WORKDIR/ingest-results.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.datasets import make_ingest_corpus  # noqa: E402
from dicom_node.ingest.receiver_slots import TABLE_NAME, read_table  # noqa: E402
from tests.peers import (  # noqa: E402
    OrthancProcess,
    StorescpProcess,
    find_tool,
    free_port,
    wait_for_port,
)

TARGETS = ("storescp", "orthanc", "pynetdicom", "dicom-node")
CORPORA = ("ct", "radiograph")
NODE_AET = "DICOM_NODE"
SCU_AET = "BENCH_SCU"
NODELAY_ENV = {"TCP_NODELAY": "1"}
NODE_CLI = REPO / ".venv" / "bin" / "dicom-node"
NODE_DEFAULT_MAX_PDU = 4 * 1024**2  # dicom-node's default max_pdu_bytes
#: The maximum PDU every receiver gets: the largest storescp (-pdu) and Orthanc
#: (MaximumPduLength) take.
DEFAULT_MAX_PDU = 131072
MIN_MAX_PDU = 4096
#: At most this many simultaneous associations: pynetdicom's default maximum, which the
#: bare pynetdicom SCP keeps.
MAX_ASSOCIATIONS = 10
#: Orthanc's default DicomThreadsCount (1.10).
ORTHANC_DICOM_THREADS = 4
BARE_SCP = Path(__file__).resolve().parent / "_bare_pynetdicom_scp.py"

console = Console(highlight=False, soft_wrap=False, width=120)


@dataclass
class Run:
    target: str
    corpus: str
    repeat: int
    images: int
    bytes: int
    seconds: float
    arrived: int
    storescu_rc: int
    ok: bool
    note: str = ""
    receiver_cpu_seconds: float | None = None  # user + system over the storescu calls
    associations: int = 1  # simultaneous associations (storescu processes)
    sender_cpu_seconds: float | None = None  # user + system of every storescu of the run

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else float("nan")


# -- dicom-node as a process -----------------------------------------------------------------


def default_node_cmd() -> list[str]:
    return [str(NODE_CLI), "serve", "--config", "{config}"]


def node_target(processes: int) -> str:
    """The target name of dicom-node with ``receiver_processes = processes``."""
    return "dicom-node" if processes == 1 else f"dicom-node-x{processes}"


def node_target_processes(target: str) -> int:
    return 1 if target == "dicom-node" else int(target.removeprefix("dicom-node-x"))


def write_node_config(
    folder: Path,
    port: int,
    max_pdu: int | None = None,
    associations: int = 1,
    processes: int = 1,
) -> Path:
    storage = folder / "storage"
    config = folder / "dicom-node.toml"
    config.write_text(
        "\n".join(
            [
                f'ae_title = "{NODE_AET}"',
                'bind_address = "127.0.0.1"',
                f"port = {port}",
                f'storage_dir = "{storage}"',
                f'database_url = "sqlite:///{folder / "node.sqlite"}"',
                "workers = 0",
                "stable_after_seconds = 60",
                "min_free_bytes = 0",
                f"max_pdu_bytes = {max_pdu or NODE_DEFAULT_MAX_PDU}",
                f"max_associations = {max(10, associations)}",
                f"receiver_processes = {processes}",
                "",
            ]
        )
    )
    return config


@contextmanager
def node_process(
    folder: Path,
    command: Sequence[str],
    max_pdu: int | None = None,
    associations: int = 1,
    processes: int = 1,
) -> Iterator[tuple[int, Path, int]]:
    """Start dicom-node with a fresh config in ``folder``; yield (port, sqlite path, pid)."""
    port = free_port()
    config = write_node_config(folder, port, max_pdu, associations, processes)
    args = [token.replace("{config}", str(config)) for token in command]
    log_path = folder / "dicom-node.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **NODELAY_ENV},
        )
        try:
            wait_for_port("127.0.0.1", port, 60, process=process, log=log_path)
            if processes > 1:  # wait until every receiver process listens
                table = folder / "storage" / TABLE_NAME
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not (
                    table.is_file() and all(entry.pid for entry in read_table(table))
                ):
                    time.sleep(0.1)
            yield port, folder / "node.sqlite", process.pid
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def count_node_instances(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM instances").fetchone()[0])


# -- the bare pynetdicom SCP as a process --------------------------------------------------


@contextmanager
def bare_scp_process(folder: Path, max_pdu: int | None) -> Iterator[tuple[int, Path, int]]:
    """Start ``_bare_pynetdicom_scp.py``; yield (port, folder its arrivals go to, pid)."""
    port = free_port()
    received = folder / "received"
    args = [
        sys.executable,
        str(BARE_SCP),
        str(port),
        str(received),
        "--max-pdu",
        str(max_pdu or NODE_DEFAULT_MAX_PDU),
    ]
    log_path = folder / "pynetdicom.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_for_port("127.0.0.1", port, 60, process=process, log=log_path)
            yield port, received, process.pid
        finally:
            stop_process(process)


# -- sending --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far, from /proc."""
    return sum(_stat_ticks(pid)[:2]) / os.sysconf("SC_CLK_TCK")


def _stat_ticks(pid: int) -> tuple[int, int, int, int, int]:
    """utime, stime, cutime, cstime (clock ticks) and the parent pid, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name start at field 3 (state): the parent
    # pid is field 4; utime, stime, cutime and cstime are fields 14 to 17.
    after_name = stat.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in after_name[11:15])
    return utime, stime, cutime, cstime, int(after_name[1])


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, its threads and its child processes so far: its own, its
    reaped children's (cutime, cstime), and that of every descendant still in /proc
    (running, or exited and not yet reaped) -- storescp ``--fork`` serves each association
    in a child."""
    ticks = _stat_ticks(pid)
    total = sum(ticks[:4])
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            other = _stat_ticks(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(other[4], []).append(int(entry.name))
    seen = {pid}
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        if child in seen:
            continue
        seen.add(child)
        try:
            total += sum(_stat_ticks(child)[:4])
        except (OSError, ValueError, IndexError):
            continue
        stack.extend(children.get(child, []))
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_associations(text: str) -> list[int]:
    """``"1,4,8"`` -> [1, 4, 8]: association counts in the order given, each once, each
    in 1..``MAX_ASSOCIATIONS``; ValueError otherwise."""
    counts: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            count = int(part)
        except ValueError:
            raise ValueError(f"not a number of associations: {part!r}") from None
        if not 1 <= count <= MAX_ASSOCIATIONS:
            raise ValueError(f"{count} associations: between 1 and {MAX_ASSOCIATIONS}")
        if count not in counts:
            counts.append(count)
    if not counts:
        raise ValueError("no association count given")
    return counts


def plan_associations(files: Sequence[Path], associations: int) -> list[list[Path]]:
    """Split ``files`` into ``associations`` contiguous parts, in order, whose sizes differ
    by one at most (the first ones the larger); ValueError when there are fewer files."""
    if associations < 1:
        raise ValueError("at least one association")
    if len(files) < associations:
        raise ValueError(f"{len(files)} file(s) cannot fill {associations} associations")
    size, extra = divmod(len(files), associations)
    parts: list[list[Path]] = []
    start = 0
    for index in range(associations):
        end = start + size + (1 if index < extra else 0)
        parts.append(list(files[start:end]))
        start = end
    return parts


@dataclass
class Sent:
    seconds: float
    rc: int  # 0, or the first non-zero storescu exit status
    tail: str  # the end of a failed storescu's output
    receiver_cpu_seconds: float
    sender_cpu_seconds: float


def send(
    storescu: str,
    port: int,
    aec: str,
    groups: Sequence[Sequence[Path]],
    receiver_pid: int,
    log_dir: Path,
) -> Sent:
    """One storescu process (one association) per group of files, all started together;
    the wall clock until the last ends, and the receiver's and the senders' CPU time."""
    log_dir.mkdir(parents=True, exist_ok=True)
    receiver_before = tree_cpu_seconds(receiver_pid)
    senders_before = children_cpu_seconds()
    started = time.perf_counter()
    running: list[tuple[subprocess.Popen[bytes], Path, Any]] = []
    try:
        for index, group in enumerate(groups):
            log_path = log_dir / f"storescu-{index + 1}.log"
            log = open(log_path, "wb")
            args = [storescu, "-aet", SCU_AET, "-aec", aec, "127.0.0.1", str(port)]
            process = subprocess.Popen(
                [*args, *map(str, group)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **NODELAY_ENV},
            )
            running.append((process, log_path, log))
        codes = [process.wait(timeout=3600) for process, _, _ in running]
    finally:
        for process, _, log in running:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    seconds = time.perf_counter() - started
    receiver_cpu = tree_cpu_seconds(receiver_pid) - receiver_before
    sender_cpu = children_cpu_seconds() - senders_before
    failed = [(code, path) for code, (_, path, _) in zip(codes, running, strict=True) if code]
    tail = failed[0][1].read_text(errors="replace").strip()[-1500:] if failed else ""
    return Sent(seconds, failed[0][0] if failed else 0, tail, receiver_cpu, sender_cpu)


def run_one(
    target: str,
    corpus: str,
    files: list[Path],
    folder: Path,
    repeat: int,
    storescu: str,
    node_cmd: Sequence[str],
    max_pdu: int | None,
    associations: int = 1,
) -> Run:
    """Start ``target`` fresh in ``folder``, send ``files`` over ``associations``
    simultaneous associations, count what arrived."""
    folder.mkdir(parents=True, exist_ok=True)
    size = sum(f.stat().st_size for f in files)
    n = len(files)
    groups = plan_associations(files, associations)
    logs = folder / "storescu"
    max_pdu = max_pdu or DEFAULT_MAX_PDU

    def result(sent: Sent, arrived: int) -> Run:
        ok = sent.rc == 0 and arrived == n
        note = "" if ok else f"storescu rc={sent.rc}, {arrived}/{n} arrived: {sent.tail}"
        return Run(
            target,
            corpus,
            repeat,
            n,
            size,
            sent.seconds,
            arrived,
            sent.rc,
            ok,
            note,
            sent.receiver_cpu_seconds,
            associations,
            sent.sender_cpu_seconds,
        )

    if target == "storescp":
        extra = ["-pdu", str(max_pdu), *(["--fork"] if associations > 1 else [])]
        with StorescpProcess(
            "STORESCP", output_dir=folder / "received", tcp_nodelay=True, extra_args=extra
        ) as scp:
            assert scp.process is not None
            sent = send(storescu, scp.port, scp.aet, groups, scp.process.pid, logs)
            arrived = len(scp.received_files())
        return result(sent, arrived)

    if target == "orthanc":
        extra_config: dict[str, Any] = {
            "MaximumPduLength": max_pdu,
            "DicomThreadsCount": max(ORTHANC_DICOM_THREADS, associations),
        }
        with OrthancProcess(
            "ORTHANC", tcp_nodelay=True, workdir=folder, extra_config=extra_config
        ) as orthanc:
            assert orthanc.process is not None
            sent = send(
                storescu, orthanc.dicom_port, orthanc.aet, groups, orthanc.process.pid, logs
            )
            arrived = orthanc.instance_count()
        return result(sent, arrived)

    if target == "pynetdicom":
        with bare_scp_process(folder, max_pdu) as (port, received, pid):
            sent = send(storescu, port, "BARE_PYNETDICOM", groups, pid, logs)
        arrived = sum(1 for path in received.iterdir() if path.is_file())
        return result(sent, arrived)

    if target.startswith("dicom-node"):
        processes = node_target_processes(target)
        with node_process(folder, node_cmd, max_pdu, associations, processes) as (
            port,
            database,
            pid,
        ):
            sent = send(storescu, port, NODE_AET, groups, pid, logs)
            arrived = count_node_instances(database)
        return result(sent, arrived)

    raise ValueError(f"unknown target {target!r}")


# -- reporting ------------------------------------------------------------------------------


def association_counts(runs: Sequence[Run] | Sequence[dict[str, Any]]) -> list[int]:
    """The association counts that occur, in increasing order."""
    counts = {r["associations"] if isinstance(r, dict) else r.associations for r in runs}
    return sorted(counts)


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """Median seconds per (corpus, association count, target) over the repeats."""
    rows = []
    targets = list(dict.fromkeys(r.target for r in runs))  # in the order they ran
    for corpus in CORPORA:
        for associations in association_counts(runs):
            for target in targets:
                mine = [
                    r
                    for r in runs
                    if r.target == target and r.corpus == corpus and r.associations == associations
                ]
                if mine:
                    rows.append(_summary_row(mine))
    return rows


def _median_or_nan(values: Sequence[float | None]) -> float:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else float("nan")


def _summary_row(mine: list[Run]) -> dict[str, Any]:
    seconds = statistics.median(r.seconds for r in mine)
    receiver_cpu = _median_or_nan([r.receiver_cpu_seconds for r in mine])
    sender_cpu = _median_or_nan([r.sender_cpu_seconds for r in mine])
    first = mine[0]
    images, size = first.images, first.bytes
    return {
        "target": first.target,
        "corpus": first.corpus,
        "associations": first.associations,
        "images": images,
        "bytes": size,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "mb_per_s": size / 1e6 / seconds,
        "receiver_cpu_seconds": receiver_cpu,
        "receiver_cpu_ms_per_image": 1000 * receiver_cpu / images,
        "receiver_cpu_share": receiver_cpu / seconds,
        "sender_cpu_seconds": sender_cpu,
        "sender_cpu_ms_per_image": 1000 * sender_cpu / images,
        "repeats": len(mine),
        "all_arrived": all(r.ok for r in mine),
    }


RATIOS: dict[str, tuple[str, ...]] = {
    "dicom-node": ("storescp", "orthanc", "pynetdicom"),
    "pynetdicom": ("orthanc",),
}
"""For each subject, the references its images/s are divided by."""

REF_NAMES = {"storescp": "storescp", "orthanc": "Orthanc", "pynetdicom": "pynetdicom"}


def references(subject: str) -> tuple[str, ...]:
    """What ``subject`` is divided by (every dicom-node-xN as dicom-node)."""
    return RATIOS["dicom-node" if subject.startswith("dicom-node") else subject]


def ratios(summary: list[dict[str, Any]], subject: str) -> list[dict[str, Any]]:
    """``subject``'s throughput divided by each of its references', per corpus and
    association count, each against the reference at the SAME association count (1.0 =
    as fast): rows of ``corpus``, ``associations`` and ``vs_REF``."""
    out: list[dict[str, Any]] = []
    for corpus in CORPORA:
        for associations in association_counts(summary):
            by_target = {
                r["target"]: r
                for r in summary
                if r["corpus"] == corpus and r["associations"] == associations
            }
            mine = by_target.get(subject)
            if mine is None:
                continue
            values = {
                f"vs_{ref}": mine["images_per_s"] / by_target[ref]["images_per_s"]
                for ref in references(subject)
                if ref in by_target
            }
            if values:
                out.append({"corpus": corpus, "associations": associations, **values})
    return out


def print_report(summary: list[dict[str, Any]], rel: dict[str, list[dict[str, Any]]]) -> None:
    """``rel``: subject -> rows as ``ratios`` gives them."""
    counts = association_counts(summary)
    how = "one association per corpus" if counts == [1] else "N simultaneous associations"
    table = Table(title=f"C-STORE ingest (storescu, {how})", box=box.ASCII)
    for name, justify in [
        ("target", "left"),
        ("corpus", "left"),
        ("N", "right"),
        ("images", "right"),
        ("seconds", "right"),
        ("images/s", "right"),
        ("MB/s", "right"),
        ("receiver CPU ms/image", "right"),
        ("receiver CPU / wall", "right"),
        ("senders CPU ms/image", "right"),
        ("all arrived", "left"),
    ]:
        table.add_column(name, justify=justify, no_wrap=name == "target")  # type: ignore[arg-type]
    for row in summary:
        table.add_row(
            row["target"],
            row["corpus"],
            str(row["associations"]),
            str(row["images"]),
            f"{row['seconds']:.2f}",
            f"{row['images_per_s']:.1f}",
            f"{row['mb_per_s']:.1f}",
            f"{row['receiver_cpu_ms_per_image']:.2f}",
            f"{100 * row['receiver_cpu_share']:.0f} %",
            f"{row['sender_cpu_ms_per_image']:.2f}",
            "yes" if row["all_arrived"] else "NO",
        )
    console.print(table)
    columns = [
        (subject, ref)
        for subject in rel
        for ref in references(subject)
        if any(f"vs_{ref}" in row for row in rel.get(subject, []))
    ]
    keys = sorted(
        {(row["corpus"], row["associations"]) for rows in rel.values() for row in rows},
        key=lambda key: (CORPORA.index(key[0]), key[1]),
    )
    if not columns or not keys:
        return
    ratio_table = Table(
        title="images/s divided by images/s at the same N (1.00 = as fast)", box=box.ASCII
    )
    ratio_table.add_column("corpus")
    ratio_table.add_column("N", justify="right")
    for subject, ref in columns:
        ratio_table.add_column(f"{subject} / {REF_NAMES[ref]}", justify="right")
    for corpus, associations in keys:
        cells = []
        for subject, ref in columns:
            value = next(
                (
                    row.get(f"vs_{ref}")
                    for row in rel.get(subject, [])
                    if (row["corpus"], row["associations"]) == (corpus, associations)
                ),
                None,
            )
            cells.append("-" if value is None else f"{value:.2f}")
        ratio_table.add_row(corpus, str(associations), *cells)
    console.print(ratio_table)
    if ("pynetdicom", "orthanc") in columns:
        console.print(
            "pynetdicom / Orthanc: the bare pynetdicom SCP against Orthanc -- the ceiling "
            "pynetdicom itself puts on dicom-node."
        )


def tool_version(args: list[str]) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable: {exc}"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def environment(
    node_cmd: Sequence[str],
    node_kind: str,
    max_pdu: int,
    associations: Sequence[int],
    node_processes: Sequence[int] = (1,),
) -> dict[str, Any]:
    import pydicom
    import pynetdicom

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    storescu = find_tool("storescu") or "storescu"
    orthanc = find_tool("Orthanc") or "Orthanc"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "dcmtk": tool_version([storescu, "--version"]),
        "orthanc": tool_version([orthanc, "--version"]),
        "pydicom": pydicom.__version__,
        "pynetdicom": pynetdicom.__version__,
        "node_command": list(node_cmd),
        "node_kind": node_kind,
        "max_pdu_bytes": {target: max_pdu for target in TARGETS},
        "associations": list(associations),
        "storescp_fork_above_one_association": True,
        "orthanc_dicom_threads": {str(n): max(ORTHANC_DICOM_THREADS, n) for n in associations},
        "node_max_associations": {str(n): max(10, n) for n in associations},
        "node_receiver_processes": list(node_processes),
    }


# -- main -----------------------------------------------------------------------------------


def _max_pdu(text: str) -> int:
    value = int(text)
    if not MIN_MAX_PDU <= value <= DEFAULT_MAX_PDU:
        raise argparse.ArgumentTypeError(
            f"{value}: storescp and Orthanc take {MIN_MAX_PDU}..{DEFAULT_MAX_PDU} bytes"
        )
    return value


def _associations(text: str) -> list[int]:
    try:
        return parse_associations(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _node_processes(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated whole numbers") from None
    if not values or not all(1 <= v <= 16 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each 1..16")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "var" / "benchmarks" / "ingest",
        help="corpus, receivers' folders and results (default: var/benchmarks/ingest)",
    )
    parser.add_argument("--only", choices=CORPORA, help="run one corpus only")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated subset of {','.join(TARGETS)}",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per pair; median reported")
    parser.add_argument(
        "--node-cmd",
        help="command that starts dicom-node; {config} is replaced by the TOML path "
        "(default: '.venv/bin/dicom-node serve --config {config}')",
    )
    parser.add_argument(
        "--max-pdu",
        type=_max_pdu,
        default=DEFAULT_MAX_PDU,
        help=f"max receive PDU of every receiver: storescp (-pdu), Orthanc "
        f"(MaximumPduLength), the bare pynetdicom SCP and dicom-node (max_pdu_bytes); "
        f"{MIN_MAX_PDU}..{DEFAULT_MAX_PDU} (default {DEFAULT_MAX_PDU})",
    )
    parser.add_argument(
        "--associations",
        type=_associations,
        default=[1],
        help=f"comma-separated numbers of simultaneous associations the files are split "
        f"across, e.g. 1,4,8 (1..{MAX_ASSOCIATIONS}; default 1)",
    )
    parser.add_argument(
        "--images",
        type=_positive,
        help="send only the first N files of each corpus (a small run; default: all)",
    )
    parser.add_argument(
        "--node-processes",
        type=_node_processes,
        default=[1],
        help="comma-separated receiver_processes values dicom-node runs with, e.g. 1,2: "
        "target dicom-node for 1, dicom-node-xN for N (default 1)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep what the receivers stored (default: delete)"
    )
    return parser.parse_args(argv)


def plan(
    corpora: Sequence[str], associations: Sequence[int], targets: Sequence[str], repeats: int
) -> list[tuple[int, str, int, str]]:
    """The runs, in order: (repeat, corpus, association count, target)."""
    return [
        (repeat, corpus, count, target)
        for repeat in range(1, repeats + 1)
        for corpus in corpora
        for count in associations
        for target in targets
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        console.print(f"unknown target(s): {', '.join(unknown)}")
        return 2
    missing = [
        f"{tool} (apt-get install {pkg})"
        for tool, pkg, needed in [
            ("storescu", "dcmtk", True),
            ("storescp", "dcmtk", "storescp" in targets),
            ("Orthanc", "orthanc", "orthanc" in targets),
        ]
        if needed and find_tool(tool) is None
    ]
    if "dicom-node" in targets and not args.node_cmd and not NODE_CLI.is_file():
        missing.append(f"{NODE_CLI} (.venv/bin/pip install -e .)")
    if missing:
        console.print("missing: " + ", ".join(missing))
        return 2
    storescu = find_tool("storescu")
    assert storescu is not None
    if "dicom-node" in targets:
        at = targets.index("dicom-node")
        targets[at : at + 1] = [node_target(n) for n in args.node_processes]

    if args.node_cmd:
        node_cmd, node_kind = shlex.split(args.node_cmd), "--node-cmd"
    else:
        node_cmd, node_kind = default_node_cmd(), "dicom-node CLI"

    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    console.print(f"workdir: {workdir}")
    started = time.perf_counter()
    corpus = make_ingest_corpus(workdir / "corpus")
    console.print(f"corpus ready in {time.perf_counter() - started:.1f} s")
    if args.images:
        corpus = {name: files[: args.images] for name, files in corpus.items()}
    corpora = [args.only] if args.only else list(CORPORA)
    too_few = [n for n in corpora if len(corpus[n]) < max(args.associations)]
    if too_few:
        console.print(f"fewer files than associations in: {', '.join(too_few)}")
        return 2
    for name in corpora:  # warm the page cache so every target reads the files from memory
        for path in corpus[name]:
            path.read_bytes()
    console.print(f"dicom-node runs as: {node_kind}: {' '.join(node_cmd)}")
    console.print(f"max PDU of every receiver: {args.max_pdu} bytes")

    runs: list[Run] = []
    runs_dir = workdir / "runs"
    for repeat, name, count, target in plan(corpora, args.associations, targets, args.repeat):
        files = corpus[name]
        folder = runs_dir / f"{target}-{name}-n{count}-{repeat}"
        shutil.rmtree(folder, ignore_errors=True)
        console.print(
            f"[{repeat}/{args.repeat}] {name}: {len(files)} files over {count} "
            f"association(s) -> {target} ..."
        )
        try:
            run = run_one(
                target, name, files, folder, repeat, storescu, node_cmd, args.max_pdu, count
            )
        except Exception as exc:  # noqa: BLE001 - recorded as a failed run
            size = sum(f.stat().st_size for f in files)
            run = Run(
                target,
                name,
                repeat,
                len(files),
                size,
                float("nan"),
                0,
                -1,
                False,
                f"{type(exc).__name__}: {exc}",
                associations=count,
            )
        runs.append(run)
        status = "ok" if run.ok else f"FAILED: {run.note}"
        cpu = (
            f", receiver CPU {run.receiver_cpu_seconds:.2f} s"
            if run.receiver_cpu_seconds is not None
            else ""
        )
        if run.sender_cpu_seconds is not None:
            cpu += f", senders CPU {run.sender_cpu_seconds:.2f} s"
        console.print(
            f"    {run.seconds:.2f} s, {run.images_per_s:.1f} images/s, "
            f"{run.mb_per_s:.1f} MB/s{cpu}, {run.arrived}/{run.images} arrived "
            f"-- {status}"
        )
        if run.ok and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    good = [r for r in runs if r.seconds == r.seconds]  # drop NaN (runs that crashed)
    summary = summarise(good)
    subjects = [t for t in targets if t.startswith("dicom-node")] + ["pynetdicom"]
    rel = {subject: ratios(summary, subject) for subject in subjects}
    print_report(summary, rel)

    results = {
        "benchmark": "ingest",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(
            node_cmd, node_kind, args.max_pdu, args.associations, args.node_processes
        ),
        "corpus": {
            name: {
                "images": len(corpus[name]),
                "bytes": sum(p.stat().st_size for p in corpus[name]),
            }
            for name in corpora
        },
        "runs": [
            {**asdict(r), "images_per_s": r.images_per_s, "mb_per_s": r.mb_per_s} for r in runs
        ],
        "summary": summary,
        "dicom_node_ratio": rel.get("dicom-node", []),
        "dicom_node_processes_ratio": {s: rows for s, rows in rel.items() if s != "pynetdicom"},
        "pynetdicom_ratio": rel["pynetdicom"],
    }
    out = workdir / "ingest-results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results written to {out}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
