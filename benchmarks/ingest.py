"""Ingest benchmark: how fast do storescp, Orthanc and dicom-node take a corpus in?

    .venv/bin/python benchmarks/ingest.py [--workdir DIR] [--only ct|radiograph]
                                          [--repeat N] [--node-cmd CMD] [--max-pdu N] [--keep]

One run sends each corpus (300 CT slices; 50 DX radiographs; see ``datasets.py``) with
dcmtk ``storescu`` -- one association per corpus, all files in one call, TCP_NODELAY=1 --
to three receivers, each started fresh on a free port for every (corpus, target):

- ``storescp``: dcmtk's storescp (``+xa``), TCP_NODELAY=1 -- the floor;
- ``orthanc``: Orthanc with a private SQLite index and storage, TCP_NODELAY=1;
- ``dicom-node``: ``dicom-node serve --config CONFIG.toml`` as a separate process (or
  ``benchmarks/_node_shim.py CONFIG.toml`` while the CLI does not exist yet, or
  ``--node-cmd``, where ``{config}`` is replaced by the TOML's path).

Time is the wall clock of the storescu call (association set-up, every C-STORE and its
answer, release). Afterwards the arrivals are counted on the receiver's side: files in
storescp's folder, CountInstances from Orthanc's /statistics, rows in dicom-node's
``instances`` table. MB/s uses the corpus' file sizes in 10^6 bytes.

Results are printed as an ASCII table and written to ``WORKDIR/ingest-results.json``.
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

TARGETS = ("storescp", "orthanc", "dicom-node")
CORPORA = ("ct", "radiograph")
NODE_AET = "DICOM_NODE"
SCU_AET = "BENCH_SCU"
NODELAY_ENV = {"TCP_NODELAY": "1"}

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

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else float("nan")


# -- dicom-node as a process -----------------------------------------------------------------


def node_cli() -> str | None:
    """``dicom-node`` if its CLI runs (``--help`` exits 0), else None."""
    candidates = [REPO / ".venv" / "bin" / "dicom-node", Path(sys.executable).parent / "dicom-node"]
    found = shutil.which("dicom-node")
    if found:
        candidates.append(Path(found))
    for exe in candidates:
        if not exe.is_file():
            continue
        try:
            result = subprocess.run(
                [str(exe), "--help"], capture_output=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            return str(exe)
    return None


def default_node_cmd() -> tuple[list[str], str]:
    cli = node_cli()
    if cli is not None:
        return [cli, "serve", "--config", "{config}"], "dicom-node CLI"
    shim = Path(__file__).resolve().parent / "_node_shim.py"
    return [sys.executable, str(shim), "{config}"], "in-process receiver shim (CLI missing)"


def write_node_config(folder: Path, port: int) -> Path:
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
                "",
            ]
        )
    )
    return config


@contextmanager
def node_process(folder: Path, command: Sequence[str]) -> Iterator[tuple[int, Path]]:
    """Start dicom-node with a fresh config in ``folder``; yield (port, sqlite path)."""
    port = free_port()
    config = write_node_config(folder, port)
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
            yield port, folder / "node.sqlite"
        finally:
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


# -- sending --------------------------------------------------------------------------------


def send(storescu: str, port: int, aec: str, files: Sequence[Path]) -> tuple[float, int, str]:
    """One storescu call, one association, all files; (seconds, return code, stderr tail)."""
    args = [storescu, "-aet", SCU_AET, "-aec", aec, "127.0.0.1", str(port), *map(str, files)]
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
    tail = (result.stderr or result.stdout).strip()[-1500:]
    return seconds, result.returncode, tail


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

    def result(seconds: float, rc: int, arrived: int, tail: str) -> Run:
        ok = rc == 0 and arrived == n
        note = "" if ok else f"storescu rc={rc}, {arrived}/{n} arrived: {tail}"
        return Run(target, corpus, repeat, n, size, seconds, arrived, rc, ok, note)

    if target == "storescp":
        extra = ["-pdu", str(max_pdu)] if max_pdu else []
        with StorescpProcess(
            "STORESCP", output_dir=folder / "received", tcp_nodelay=True, extra_args=extra
        ) as scp:
            seconds, rc, tail = send(storescu, scp.port, scp.aet, files)
            arrived = len(scp.received_files())
        return result(seconds, rc, arrived, tail)

    if target == "orthanc":
        extra_config: dict[str, Any] = {"MaximumPduLength": max_pdu} if max_pdu else {}
        with OrthancProcess(
            "ORTHANC", tcp_nodelay=True, workdir=folder, extra_config=extra_config
        ) as orthanc:
            seconds, rc, tail = send(storescu, orthanc.dicom_port, orthanc.aet, files)
            arrived = orthanc.instance_count()
        return result(seconds, rc, arrived, tail)

    if target == "dicom-node":
        with node_process(folder, node_cmd) as (port, database):
            seconds, rc, tail = send(storescu, port, NODE_AET, files)
            arrived = count_node_instances(database)
        return result(seconds, rc, arrived, tail)

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
                    "repeats": len(mine),
                    "all_arrived": all(r.ok for r in mine),
                }
            )
    return rows


def ratios(summary: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """dicom-node's throughput divided by each reference's, per corpus (1.0 = as fast)."""
    out: dict[str, dict[str, float]] = {}
    for corpus in CORPORA:
        by_target = {r["target"]: r for r in summary if r["corpus"] == corpus}
        node = by_target.get("dicom-node")
        if node is None:
            continue
        out[corpus] = {
            f"vs_{ref}": node["images_per_s"] / by_target[ref]["images_per_s"]
            for ref in ("storescp", "orthanc")
            if ref in by_target
        }
    return out


def print_report(summary: list[dict[str, Any]], rel: dict[str, dict[str, float]]) -> None:
    table = Table(title="C-STORE ingest (storescu, one association per corpus)", box=box.ASCII)
    for name, justify in [
        ("target", "left"),
        ("corpus", "left"),
        ("images", "right"),
        ("seconds", "right"),
        ("images/s", "right"),
        ("MB/s", "right"),
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
            "yes" if row["all_arrived"] else "NO",
        )
    console.print(table)
    rel = {corpus: values for corpus, values in rel.items() if values}
    if rel:
        ratio_table = Table(title="dicom-node images/s divided by the reference's", box=box.ASCII)
        ratio_table.add_column("corpus")
        ratio_table.add_column("dicom-node / storescp", justify="right")
        ratio_table.add_column("dicom-node / Orthanc", justify="right")
        for corpus, values in rel.items():
            ratio_table.add_row(
                corpus,
                f"{values['vs_storescp']:.2f}" if "vs_storescp" in values else "-",
                f"{values['vs_orthanc']:.2f}" if "vs_orthanc" in values else "-",
            )
        console.print(ratio_table)


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
        "max_pdu_defaults": {"storescp": 16384, "orthanc": 16384, "dicom-node": 4 * 1024**2},
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
        "(default: 'dicom-node serve --config {config}' if the CLI works, else the shim)",
    )
    parser.add_argument(
        "--max-pdu",
        type=int,
        help="max receive PDU for storescp (-pdu, 4096..131072) and Orthanc "
        "(MaximumPduLength); default: each program's own (16384)",
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
    if missing:
        console.print("missing: " + ", ".join(missing))
        return 2
    storescu = find_tool("storescu")
    assert storescu is not None

    if args.node_cmd:
        node_cmd, node_kind = shlex.split(args.node_cmd), "--node-cmd"
    else:
        node_cmd, node_kind = default_node_cmd()

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
                console.print(
                    f"    {run.seconds:.2f} s, {run.images_per_s:.1f} images/s, "
                    f"{run.mb_per_s:.1f} MB/s, {run.arrived}/{run.images} arrived -- {status}"
                )
                if run.ok and not args.keep:
                    shutil.rmtree(folder, ignore_errors=True)

    good = [r for r in runs if r.seconds == r.seconds]  # drop NaN (runs that crashed)
    summary = summarise(good)
    rel = ratios(summary)
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
        "dicom_node_ratio": rel,
    }
    out = workdir / "ingest-results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results written to {out}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
