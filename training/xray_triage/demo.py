"""``xray_triage``'s part of ``dicom-node demo``: films whose header does not say what they
show, routed by the image.

With this entry on, the demo's radiograph routes (the hand films' ``hands`` and, when the
MURA part is on, ``msk``) classify films with an unclear Body Part Examined first
(``when_headers_unclear = "xray_triage"``, README "Routing by image"). It sends a hand film
with no Body Part Examined (which should end up with ``hand_orientation``), an elbow film
with an empty one (``mura_abnormality``, when that part is on) and a photo sent as CR
(routed to nothing), each its own study. When no model is active it trains a small one
(``--triage-preset``) on synthetic films of other seeds. The table puts what the
classifier saw and where the film went beside the truth.
"""

from __future__ import annotations

import argparse
import shutil
from typing import TYPE_CHECKING, Any

from training.demo_entry import DemoCase, DemoModel, DemoRun

if TYPE_CHECKING:
    from rich.console import Console

PIPELINE = "xray_triage"
#: (kind, what its header says: None absent, "" empty; the pipeline it should reach).
FILMS: tuple[tuple[str, str | None, str | None], ...] = (
    ("hand", None, "hand_orientation"),
    ("elbow", "", "mura_abnormality"),
    ("photo", None, None),
)


def routed_to(case: DemoCase) -> list[str]:
    """The pipelines the film reached after its classification."""
    return [p for p in case.study_pipelines if p != PIPELINE]


def correct(case: DemoCase) -> bool | None:
    if case.state != "delivered":
        return None
    expected = case.truth["expected"]
    return routed_to(case) == ([] if expected is None else [expected])


class XrayTriageDemo:
    """Films with an unclear header → ``xray_triage`` → the route of what they show;
    ``--triage-films``, ``--triage-preset``."""

    pipeline = PIPELINE
    route = "by-image"  # no route of its own: it classifies for the routes below
    modalities: tuple[str, ...] = ("DX", "CR")
    body_parts: tuple[str, ...] = ()
    classifies_for: tuple[str, ...] = ("hands", "msk")

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--triage-films",
            type=int,
            default=len(FILMS),
            help=f"films with an unclear header routed by the image (0: none, at most {len(FILMS)})",
        )
        parser.add_argument(
            "--triage-preset",
            default="demo",
            help="xray_triage training preset when no model is active",
        )

    def check_options(self, options: argparse.Namespace) -> None:
        if not 0 <= options.triage_films <= len(FILMS):
            raise ValueError(f"--triage-films must be between 0 and {len(FILMS)}")

    def enabled(self, options: argparse.Namespace) -> bool:
        return bool(options.triage_films > 0)

    def forget(self, run: DemoRun) -> None:
        shutil.rmtree(run.workdir / "triage", ignore_errors=True)

    def train(self, run: DemoRun, console: Console) -> DemoModel:
        from training.xray_triage.train import preset, train_triage

        config = preset(
            run.options.triage_preset, out_dir=run.model_dir / PIPELINE, seed=run.seed + 6000
        )
        console.print(
            f"training a small {PIPELINE} model ({config.architecture}, {config.size} px, "
            "synthetic films of the 14 X-ray types and of photos, pages and screenshots); "
            "the paper's DenseNet-121 at 224 stays the default of `dicom-node train "
            "xray_triage`"
        )
        trained = train_triage(config)
        report = trained.report
        return DemoModel(
            trained.folder,
            f"on held-out synthetic films: X-ray or not {report.module_1.accuracy_pct:.1f} %, "
            f"X-ray type {report.module_2.accuracy_pct:.1f} %",
        )

    def write_cases(self, run: DemoRun, console: Console) -> list[DemoCase]:
        import pydicom

        from training.synthetic.xray_types import render_triage_film, write_triage_film

        folder = run.workdir / "triage"
        shutil.rmtree(folder, ignore_errors=True)
        mura_on = getattr(run.options, "mura_studies", 0) > 0
        cases = []
        for index, (kind, header, expected) in enumerate(FILMS[: run.options.triage_films]):
            if expected == "mura_abnormality" and not mura_on:
                continue
            film = render_triage_film(kind, run.seed + 7000 + index, size=512)
            path = write_triage_film(
                film,
                folder / f"{kind}.dcm",
                modality="DX" if kind == "hand" else "CR",
                body_part_examined=header,
                seed=run.seed + 7000 + index,
            )
            study = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
            cases.append(
                DemoCase(
                    study,
                    PIPELINE,
                    [path],
                    truth={"film": kind, "header": header, "expected": expected},
                )
            )
        console.print(
            f"{len(cases)} films with no or an empty Body Part Examined in {folder} "
            f"({', '.join(c.truth['film'] for c in cases)})"
        )
        return cases

    def finish(self, run: DemoRun, cases: list[DemoCase]) -> None:
        return None

    def print_report(
        self, cases: list[DemoCase], model_version: str, run: DemoRun, console: Console
    ) -> None:
        from rich.table import Table

        table = Table(title=f"{PIPELINE} {model_version}: films routed by the image")
        for column in ("film", "header", "classifier saw", "p", "expected", "routed to"):
            table.add_column(column, justify="right" if column == "p" else "left")
        for case in cases:
            header = case.truth["header"]
            table.add_row(
                str(case.truth["film"]),
                "absent" if header is None else repr(header),
                _seen(case.summary),
                _probability(case.summary),
                case.truth["expected"] or "nothing",
                ", ".join(routed_to(case)) or "nothing",
            )
        console.print(table)
        right = sum(1 for c in cases if correct(c))
        console.print(f"{right} of {len(cases)} films went where their image says")

    def report_json(
        self, cases: list[DemoCase], model_version: str | None, trained: bool, run: DemoRun
    ) -> dict[str, Any]:
        if not cases:
            return {"triage": None}
        rows = [
            {
                "study_instance_uid": case.study_instance_uid,
                "truth": case.truth,
                "is_xray": case.summary.get("is_xray"),
                "xray_type": case.summary.get("xray_type"),
                "type_probability": case.summary.get("type_probability"),
                "xray_probability": case.summary.get("xray_probability"),
                "routed_to": routed_to(case),
                "correct": correct(case),
                "in_pacs": case.outputs,
                "state": case.state,
            }
            for case in cases
        ]
        return {"triage": {"model_version": model_version, "trained": trained, "films": rows}}


def _seen(summary: dict[str, Any]) -> str:
    if not summary:
        return "—"
    if not summary.get("is_xray"):
        return "not an X-ray"
    return str(summary.get("xray_type") or "—")


def _probability(summary: dict[str, Any]) -> str:
    key = "type_probability" if summary.get("is_xray") else "xray_probability"
    value = summary.get(key)
    return "—" if value is None else f"{float(value):.2f}"


DEMO = XrayTriageDemo()
