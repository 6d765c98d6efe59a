"""``hand_orientation``'s part of ``dicom-node demo``: synthetic hand films at known angles.

Writes ``--studies`` synthetic hand studies (``training.synthetic.hand_films``), trains a
small orientation model on other synthetic films when none is active, and prints a table:
study, predicted angle, true angle, error, and where the SC / SR / GSPS went.
"""

from __future__ import annotations

import argparse
import shutil
from typing import TYPE_CHECKING, Any

from training.demo_entry import DemoCase, DemoModel, DemoRun

if TYPE_CHECKING:
    from rich.console import Console

PIPELINE = "hand_orientation"


def error_deg(case: DemoCase) -> float | None:
    """Predicted minus true angle, in (-180°, 180°]; None without a prediction."""
    predicted = predicted_angle_deg(case)
    if predicted is None:
        return None
    difference = (predicted - float(case.truth["angle_deg"])) % 360.0
    return difference - 360.0 if difference > 180.0 else difference


def _film(case: DemoCase) -> dict[str, Any]:
    return dict((case.summary.get("films") or [{}])[0])


def predicted_angle_deg(case: DemoCase) -> float | None:
    return _film(case).get("angle_deg")


def rotation_deg(case: DemoCase) -> float | None:
    return _film(case).get("rotation_deg")


class HandOrientationDemo:
    """DX/CR hand films → ``hand_orientation``; ``--studies``, ``--film-scale``, ``--preset``."""

    pipeline = PIPELINE
    route = "hands"
    modalities: tuple[str, ...] = ("DX", "CR")
    body_parts: tuple[str, ...] = ("HAND",)  # other radiographs go to mura_abnormality
    classifies_for: tuple[str, ...] = ()

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--studies", type=int, default=4)
        parser.add_argument(
            "--film-scale", type=float, default=1.0, help="1.0: the paper's detector sizes"
        )
        parser.add_argument(
            "--preset",
            default="demo",
            help="hand_orientation training preset when no model is active",
        )

    def check_options(self, options: argparse.Namespace) -> None:
        return None

    def enabled(self, options: argparse.Namespace) -> bool:
        return True

    def forget(self, run: DemoRun) -> None:
        return None  # the films' folder is emptied when they are written

    def train(self, run: DemoRun, console: Console) -> DemoModel:
        from training.hand_orientation.train import preset, train_orientation

        config = preset(
            # Another seed than the demo's studies: the model never sees them in training.
            run.options.preset,
            out_dir=run.model_dir / PIPELINE,
            seed=run.seed + 1000,
        )
        console.print(
            f"training a small {PIPELINE} model ({config.architecture}, "
            f"{config.resize}→{config.crop} px, {config.synthetic_films} synthetic films); the "
            "paper's ResNet-50 stays the default of `dicom-node train`"
        )
        trained = train_orientation(config)
        report = trained.report
        return DemoModel(
            trained.folder,
            f"on held-out synthetic films MAE {report.mae_deg:.2f}°, "
            f"{report.within_4deg_pct:.1f} % within ±4°, four-way accuracy "
            f"{report.quadrant_accuracy_pct:.1f} %",
        )

    def write_cases(self, run: DemoRun, console: Console) -> list[DemoCase]:
        from training.synthetic.hand_films import write_hand_studies

        films_dir = run.workdir / "films"
        shutil.rmtree(films_dir, ignore_errors=True)
        with console.status("writing synthetic hand studies"):
            films = write_hand_studies(
                films_dir, run.options.studies, seed=run.seed, scale=run.options.film_scale
            )
        console.print(f"{len(films)} synthetic hand studies in {films_dir}")
        return [
            DemoCase(
                film.study_instance_uid, PIPELINE, [film.path], truth={"angle_deg": film.angle_deg}
            )
            for film in films
        ]

    def finish(self, run: DemoRun, cases: list[DemoCase]) -> None:
        return None

    def print_report(
        self, cases: list[DemoCase], model_version: str, run: DemoRun, console: Console
    ) -> None:
        from rich.table import Table

        table = Table(title=f"hand_orientation {model_version}: results back in the PACS")
        for column in ("study", "true angle", "predicted", "error", "turned", "in the PACS"):
            table.add_column(column, justify="right" if column != "study" else "left")
        errors = []
        for case in cases:
            error = error_deg(case)
            if error is not None:
                errors.append(abs(error))
            predicted, turned = predicted_angle_deg(case), rotation_deg(case)
            table.add_row(
                "…" + case.study_instance_uid[-12:],
                f"{case.truth['angle_deg']:.1f}°",
                "—" if predicted is None else f"{predicted:.1f}°",
                "—" if error is None else f"{error:+.1f}°",
                "—" if turned is None else f"{turned:+.1f}°",
                ", ".join(case.outputs),
            )
        console.print(table)
        if errors:
            console.print(
                f"mean absolute error {sum(errors) / len(errors):.2f}° over {len(errors)} films"
            )

    def report_json(
        self, cases: list[DemoCase], model_version: str | None, trained: bool, run: DemoRun
    ) -> dict[str, Any]:
        rows = [
            {
                "study_instance_uid": case.study_instance_uid,
                "true_angle_deg": case.truth["angle_deg"],
                "predicted_angle_deg": predicted_angle_deg(case),
                "error_deg": error_deg(case),
                "rotation_deg": rotation_deg(case),
                "in_pacs": case.outputs,
                "state": case.state,
            }
            for case in cases
        ]
        return {"model_version": model_version, "trained": trained, "studies": rows}


DEMO = HandOrientationDemo()
