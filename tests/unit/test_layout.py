"""The house by stage: the folders of ``dicom_node`` follow the flow and imports only go
forward, never back into an earlier stage (README's layout section); ``dicom_node`` never imports ``training``; modules
stay small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The stages in the order of the flow. A stage hands its work forward, so it may import a
#: later stage (``ingest.stable`` enqueues jobs, ``jobs.worker`` calls the encoder) but
#: never an earlier one. The base (settings, errors, store, uids, clock, db, trainers) and
#: ``net`` (the SCU side and the network helpers the receiver and deliverer share) import
#: no stage and are imported by all.
STAGES = ("ingest", "jobs", "output")
UTILITIES = ("base", "net")
#: Beside the flow (``retraining``): it uses the stages (the index, the model registry) and
#: ``net`` as the wiring does, but no stage imports it; only the wiring does.
BESIDE = ("retraining",)
#: Observing the node (``http``: pages, metrics, health): it reads the database and may use
#: the stages' and ``retraining``'s read functions; nothing but the wiring imports it.
OBSERVE = ("http",)
#: What wires the stages together, each importing anything before it. ``conformance``
#: (the conformance statement's tables) reads the constants of every stage.
WIRING = ("conformance", "flow", "demo", "cli", "__main__")
KNOWN = {*STAGES, *UTILITIES, *BESIDE, *OBSERVE, *WIRING}
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    """Every absolute module an import statement of ``path`` names (``from a import b``
    gives ``a`` and ``a.b``: ``b`` may be a module)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return found


def _stage(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in KNOWN:
        return "base"
    return parts[1]


def _allowed(source: str, target: str) -> bool:
    if source == target or target == "base":
        return True
    if source in WIRING:
        return target not in WIRING or WIRING.index(target) < WIRING.index(source)
    if source in BESIDE:
        return target in STAGES or target == "net"
    if source in OBSERVE:
        return target in STAGES or target in BESIDE or target == "net"
    if target == "net":
        return source != "base"
    if source in STAGES and target in STAGES:
        return STAGES.index(target) > STAGES.index(source)
    return False


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "migrations" not in p.parts)


def _backward(importer: str, imported: list[str]) -> list[str]:
    """The imports of ``importer`` that reach back into an earlier stage or the wiring."""
    source = _stage(importer)
    return [
        f"{importer} imports {name}"
        for name in imported
        if name.startswith("dicom_node.") and not _allowed(source, _stage(name))
    ]


def test_imports_between_the_stages_only_go_forward() -> None:
    backwards = []
    for path in _sources("dicom_node"):
        backwards += _backward(_module_name(path), _imports(path))
    assert backwards == []


def test_the_rule_flags_an_import_back_into_a_later_stage() -> None:
    assert _backward("dicom_node.output.deliver", ["dicom_node.jobs.queue"]) == [
        "dicom_node.output.deliver imports dicom_node.jobs.queue"
    ]
    assert _backward("dicom_node.jobs.worker", ["dicom_node.ingest.index"]) != []
    assert _backward("dicom_node.net.scu", ["dicom_node.ingest.index"]) != []
    assert _backward("dicom_node.settings", ["dicom_node.output.uids"]) != []
    assert _backward("dicom_node.jobs.worker", ["dicom_node.flow"]) != []
    assert _backward("dicom_node.flow", ["dicom_node.cli.term"]) != []
    forward = ["dicom_node.output.encode", "dicom_node.store", "dicom_node.net.scu"]
    assert _backward("dicom_node.jobs.worker", forward) == []
    assert _backward("dicom_node.ingest.stable", ["dicom_node.jobs.queue"]) == []
    assert _backward("dicom_node.cli.demo", ["dicom_node.demo.run", "dicom_node.flow"]) == []
    assert _backward("dicom_node.jobs.worker", ["dicom_node.retraining.runner"]) != []
    assert _backward("dicom_node.retraining.runner", ["dicom_node.flow"]) != []
    beside = ["dicom_node.jobs.model_registry", "dicom_node.ingest.route", "dicom_node.net.scu"]
    assert _backward("dicom_node.retraining.runner", beside) == []
    assert _backward("dicom_node.flow", ["dicom_node.retraining.schedule"]) == []
    read = [
        "dicom_node.jobs.results_log",
        "dicom_node.ingest.receive",
        "dicom_node.retraining.runs",
    ]
    assert _backward("dicom_node.http.pages", read) == []
    assert _backward("dicom_node.http.pages", ["dicom_node.flow"]) != []
    assert _backward("dicom_node.jobs.worker", ["dicom_node.http.metrics"]) != []
    assert _backward("dicom_node.retraining.runner", ["dicom_node.http.app"]) != []
    assert _backward("dicom_node.flow", ["dicom_node.http.server"]) == []


def test_the_node_never_imports_training_and_pipelines_import_neither() -> None:
    offending = []
    for package, forbidden in (
        ("dicom_node", ("training",)),
        ("pipelines", ("training", "dicom_node")),
        ("training", ("dicom_node",)),
    ):
        for path in _sources(package):
            for imported in _imports(path):
                if imported.split(".")[0] in forbidden:
                    offending.append(f"{_module_name(path)} imports {imported}")
    assert offending == []


def test_no_module_of_the_node_is_over_450_lines() -> None:
    long = {
        str(path.relative_to(REPO)): count
        for path in _sources("dicom_node")
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
