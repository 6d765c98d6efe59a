"""Ingest benchmark: how fast do storescp, Orthanc, pynetdicom and dicom-node take a corpus in?

    .venv/bin/python benchmarks/ingest.py [--workdir DIR] [--only ct|radiograph]
                                          [--targets T,...] [--repeat N] [--node-cmd CMD]
                                          [--max-pdu N] [--keep]

One run sends each corpus (300 CT slices; 50 DX radiographs; see ``datasets.py``) with
dcmtk ``storescu`` -- one association per corpus, all files in one call, TCP_NODELAY=1 --
to four receivers, each started fresh on a free port for every (corpus, target):

- ``storescp``: dcmtk's storescp (``+xa``), TCP_NODELAY=1 -- the floor;
- ``orthanc``: Orthanc with a private SQLite index and storage, TCP_NODELAY=1;
- ``pynetdicom``: a bare pynetdicom SCP (``_bare_pynetdicom_scp.py``): chunked receive,
  TCP_NODELAY, dicom-node's max PDU, and a C-STORE handler that only renames the received
  file into a folder -- what pynetdicom itself costs, the ceiling it puts on dicom-node;
- ``dicom-node``: ``.venv/bin/dicom-node serve --config CONFIG.toml`` as a separate
  process (or ``--node-cmd``, where ``{config}`` is replaced by the TOML's path).

Time is the wall clock of the storescu call (association set-up, every C-STORE and its
answer, release). The receiver's CPU time over the same call (user + system, all its
threads, from ``/proc/PID/stat``; with ``--node-cmd``, that of the process the command
starts) is printed as ms per image and as a share of the wall clock: a receiver near
100 % of one core is limited by its own CPU work, one well below it by waiting (for the
disk, or for the sender). Afterwards the arrivals are counted on the receiver's side:
files in storescp's and the bare pynetdicom SCP's folders, CountInstances from Orthanc's
/statistics, rows in dicom-node's ``instances`` table. MB/s uses the corpus' file sizes
in 10^6 bytes.

Results are printed as ASCII tables -- throughput, then dicom-node's images/s divided by
each other receiver's and pynetdicom's divided by Orthanc's -- and written to
``WORKDIR/ingest-results.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
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
    receiver_cpu_seconds: float | None = None  # user + system over the storescu call

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else float("nan")


# -- dicom-node as a process -----------------------------------------------------------------


def default_node_cmd() -> list[str]:
    return [str(NODE_CLI), "serve", "--config", "{config}"]


def write_node_config(folder: Path, port: int, max_pdu: int | None = None) -> Path:
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
                "",
            ]
        )
    )
    return config


@contextmanager
def node_process(
    folder: Path, command: Sequence[str], max_pdu: int | None = None
) -> Iterator[tuple[int, Path, int]]:
    """Start dicom-node with a fresh config in ``folder``; yield (port, sqlite path, pid)."""
    port = free_port()
    config = write_node_config(folder, port, max_pdu)
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
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name start at field 3 (state); utime and
    # stime are fields 14 and 15, in clock ticks.
    after_name = stat.rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sent:
    seconds: float
    rc: int
    tail: str  # the end of storescu's output
    receiver_cpu_seconds: float


def send(storescu: str, port: int, aec: str, files: Sequence[Path], receiver_pid: int) -> Sent:
    """One storescu call, one association, all files, and the receiver's CPU time over it."""
    args = [storescu, "-aet", SCU_AET, "-aec", aec, "127.0.0.1", str(port), *map(str, files)]
    cpu_before = cpu_seconds(receiver_pid)
    started = time.perf_counter()
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        env={**os.environ, **NODELAY_ENV},
        timeout=3600,
        check=False,
    )
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(receiver_pid) - cpu_before
    tail = (result.stderr or result.stdout).strip()[-1500:]
    return Sent(seconds, result.returncode, tail, cpu)


def run_one(
    target: str,
    corpus: str,
    files: list[Path],
    folder: Path,
    repeat: int,
    storescu: str,
    node_cmd: Sequence[str],
    max_pdu: int | None,
) -> Run:
    folder.mkdir(parents=True, exist_ok=True)
    size = sum(f.stat().st_size for f in files)
    n = len(files)

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
        )

    if target == "storescp":
        extra = ["-pdu", str(max_pdu)] if max_pdu else []
        with StorescpProcess(
            "STORESCP", output_dir=folder / "received", tcp_nodelay=True, extra_args=extra
        ) as scp:
            assert scp.process is not None
            sent = send(storescu, scp.port, scp.aet, files, scp.process.pid)
            arrived = len(scp.received_files())
        return result(sent, arrived)

    if target == "orthanc":
        extra_config: dict[str, Any] = {"MaximumPduLength": max_pdu} if max_pdu else {}
        with OrthancProcess(
            "ORTHANC", tcp_nodelay=True, workdir=folder, extra_config=extra_config
        ) as orthanc:
            assert orthanc.process is not None
            sent = send(storescu, orthanc.dicom_port, orthanc.aet, files, orthanc.process.pid)
            arrived = orthanc.instance_count()
        return result(sent, arrived)

    if target == "pynetdicom":
        with bare_scp_process(folder, max_pdu) as (port, received, pid):
            sent = send(storescu, port, "BARE_PYNETDICOM", files, pid)
        arrived = sum(1 for path in received.iterdir() if path.is_file())
        return result(sent, arrived)

    if target == "dicom-node":
        with node_process(folder, node_cmd, max_pdu) as (port, database, pid):
            sent = send(storescu, port, NODE_AET, files, pid)
            arrived = count_node_instances(database)
        return result(sent, arrived)

    raise ValueError(f"unknown target {target!r}")


# -- reporting ------------------------------------------------------------------------------


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """Median seconds per (target, corpus) over the repeats."""
    rows = []
    for corpus in CORPORA:
        for target in TARGETS:
            mine = [r for r in runs if r.target == target and r.corpus == corpus]
            if not mine:
                continue
            seconds = statistics.median(r.seconds for r in mine)
            cpu = [r.receiver_cpu_seconds for r in mine if r.receiver_cpu_seconds is not None]
            cpu_seconds = statistics.median(cpu) if cpu else float("nan")
            images, size = mine[0].images, mine[0].bytes
            rows.append(
                {
                    "target": target,
                    "corpus": corpus,
                    "images": images,
                    "bytes": size,
                    "seconds": seconds,
                    "images_per_s": images / seconds,
                    "mb_per_s": size / 1e6 / seconds,
                    "receiver_cpu_seconds": cpu_seconds,
                    "receiver_cpu_ms_per_image": 1000 * cpu_seconds / images,
                    "receiver_cpu_share": cpu_seconds / seconds,
                    "repeats": len(mine),
                    "all_arrived": all(r.ok for r in mine),
                }
            )
    return rows


RATIOS: dict[str, tuple[str, ...]] = {
    "dicom-node": ("storescp", "orthanc", "pynetdicom"),
    "pynetdicom": ("orthanc",),
}
"""For each subject, the references its images/s are divided by."""

REF_NAMES = {"storescp": "storescp", "orthanc": "Orthanc", "pynetdicom": "pynetdicom"}


def ratios(summary: list[dict[str, Any]], subject: str) -> dict[str, dict[str, float]]:
    """``subject``'s throughput divided by each of its references', per corpus (1.0 = as fast)."""
    out: dict[str, dict[str, float]] = {}
    for corpus in CORPORA:
        by_target = {r["target"]: r for r in summary if r["corpus"] == corpus}
        mine = by_target.get(subject)
        if mine is None:
            continue
        out[corpus] = {
            f"vs_{ref}": mine["images_per_s"] / by_target[ref]["images_per_s"]
            for ref in RATIOS[subject]
            if ref in by_target
        }
    return out


def print_report(
    summary: list[dict[str, Any]], rel: dict[str, dict[str, dict[str, float]]]
) -> None:
    """``rel``: subject -> corpus -> ``vs_REF`` -> ratio, as ``ratios`` gives them."""
    table = Table(title="C-STORE ingest (storescu, one association per corpus)", box=box.ASCII)
    for name, justify in [
        ("target", "left"),
        ("corpus", "left"),
        ("images", "right"),
        ("seconds", "right"),
        ("images/s", "right"),
        ("MB/s", "right"),
        ("receiver CPU ms/image", "right"),
        ("receiver CPU / wall", "right"),
        ("all arrived", "left"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in summary:
        table.add_row(
            row["target"],
            row["corpus"],
            str(row["images"]),
            f"{row['seconds']:.2f}",
            f"{row['images_per_s']:.1f}",
            f"{row['mb_per_s']:.1f}",
            f"{row['receiver_cpu_ms_per_image']:.2f}",
            f"{100 * row['receiver_cpu_share']:.0f} %",
            "yes" if row["all_arrived"] else "NO",
        )
    console.print(table)
    columns = [
        (subject, ref)
        for subject, refs in RATIOS.items()
        for ref in refs
        if any(f"vs_{ref}" in values for values in rel.get(subject, {}).values())
    ]
    corpora = [c for c in CORPORA if any(c in rel.get(subject, {}) for subject, _ in columns)]
    if not columns or not corpora:
        return
    ratio_table = Table(title="images/s divided by images/s (1.00 = as fast)", box=box.ASCII)
    ratio_table.add_column("corpus")
    for subject, ref in columns:
        ratio_table.add_column(f"{subject} / {REF_NAMES[ref]}", justify="right")
    for corpus in corpora:
        cells = []
        for subject, ref in columns:
            value = rel.get(subject, {}).get(corpus, {}).get(f"vs_{ref}")
            cells.append("-" if value is None else f"{value:.2f}")
        ratio_table.add_row(corpus, *cells)
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


def environment(node_cmd: Sequence[str], node_kind: str, max_pdu: int | None) -> dict[str, Any]:
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
        "dcmtk": tool_version([storescu, "--version"]),
        "orthanc": tool_version([orthanc, "--version"]),
        "pydicom": pydicom.__version__,
        "pynetdicom": pynetdicom.__version__,
        "node_command": list(node_cmd),
        "node_kind": node_kind,
        "max_pdu_override": max_pdu,
        "max_pdu_defaults": {
            "storescp": 16384,
            "orthanc": 16384,
            "pynetdicom": NODE_DEFAULT_MAX_PDU,
            "dicom-node": NODE_DEFAULT_MAX_PDU,
        },
    }


# -- main -----------------------------------------------------------------------------------


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
        type=int,
        help="max receive PDU for storescp (-pdu, 4096..131072), Orthanc "
        "(MaximumPduLength) and the bare pynetdicom SCP; default: storescp's and Orthanc's "
        "own (16384), dicom-node's default (4 MiB) for pynetdicom. dicom-node itself keeps "
        "its default",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep what the receivers stored (default: delete)"
    )
    return parser.parse_args(argv)


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
    corpora = [args.only] if args.only else list(CORPORA)
    for name in corpora:  # warm the page cache so every target reads the files from memory
        for path in corpus[name]:
            path.read_bytes()
    console.print(f"dicom-node runs as: {node_kind}: {' '.join(node_cmd)}")

    runs: list[Run] = []
    runs_dir = workdir / "runs"
    for repeat in range(1, args.repeat + 1):
        for name in corpora:
            files = corpus[name]
            for target in targets:
                folder = runs_dir / f"{target}-{name}-{repeat}"
                shutil.rmtree(folder, ignore_errors=True)
                console.print(
                    f"[{repeat}/{args.repeat}] {name}: {len(files)} files -> {target} ..."
                )
                try:
                    run = run_one(
                        target, name, files, folder, repeat, storescu, node_cmd, args.max_pdu
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
                    )
                runs.append(run)
                status = "ok" if run.ok else f"FAILED: {run.note}"
                cpu = (
                    f", receiver CPU {run.receiver_cpu_seconds:.2f} s"
                    if run.receiver_cpu_seconds is not None
                    else ""
                )
                console.print(
                    f"    {run.seconds:.2f} s, {run.images_per_s:.1f} images/s, "
                    f"{run.mb_per_s:.1f} MB/s{cpu}, {run.arrived}/{run.images} arrived "
                    f"-- {status}"
                )
                if run.ok and not args.keep:
                    shutil.rmtree(folder, ignore_errors=True)

    good = [r for r in runs if r.seconds == r.seconds]  # drop NaN (runs that crashed)
    summary = summarise(good)
    rel = {subject: ratios(summary, subject) for subject in RATIOS}
    print_report(summary, rel)

    results = {
        "benchmark": "ingest",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(node_cmd, node_kind, args.max_pdu),
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
        "dicom_node_ratio": rel["dicom-node"],
        "pynetdicom_ratio": rel["pynetdicom"],
    }
    out = workdir / "ingest-results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results written to {out}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
