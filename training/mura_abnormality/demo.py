"""``mura_abnormality``'s part of ``dicom-node demo``: synthetic musculoskeletal studies
with a known verdict.

Writes ``--mura-studies`` synthetic upper-extremity studies (``training.synthetic.
msk_films``), half of them normal and half with metal hardware (the abnormality the CPU
models learn; see the training README), the abnormal ones with one series per view so that
the verdict is one over several series. They are routed by Body Part Examined (the MURA
regions other than the hand, which the hand films' route takes). When no model is active
it trains a small one (``--mura-preset``) on studies of other seeds. The table puts each
study's verdict and probability beside the truth, with the views the Key Object Selection
points at; the first heat map SC is written as ``mura_heatmap.png`` in the work folder.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.demo_entry import DemoCase, DemoModel, DemoRun

if TYPE_CHECKING:
    from rich.console import Console

PIPELINE = "mura_abnormality"
HEATMAP_PNG = "mura_heatmap.png"
#: The demo's regions, in turn: Body Part Examined routes them here, not to the hands' route.
REGIONS: tuple[str, ...] = ("elbow", "forearm", "shoulder", "humerus", "wrist", "finger")


def verdict(case: DemoCase) -> str | None:
    value = case.summary.get("verdict")
    return None if value is None else str(value)


def correct(case: DemoCase) -> bool | None:
    """Whether the verdict matches the truth; None without a verdict."""
    found = verdict(case)
    if found is None:
        return None
    return (found == "abnormal") == bool(case.truth["abnormal"])


class MuraAbnormalityDemo:
    """CR/DX upper-extremity studies → ``mura_abnormality``; ``--mura-studies``,
    ``--mura-preset``."""

    pipeline = PIPELINE
    route = "msk"
    modalities: tuple[str, ...] = ("DX", "CR")
    body_parts: tuple[str, ...] = tuple(region.upper() for region in REGIONS)
    classifies_for: tuple[str, ...] = ()

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--mura-studies",
            type=int,
            default=2,
            help="synthetic musculoskeletal studies, half normal, half abnormal (0: none)",
        )
        parser.add_argument(
            "--mura-preset",
            default="demo",
            help="mura_abnormality training preset when no model is active",
        )

    def check_options(self, options: argparse.Namespace) -> None:
        if options.mura_studies < 0:
            raise ValueError("--mura-studies must be 0 or more")

    def enabled(self, options: argparse.Namespace) -> bool:
        return bool(options.mura_studies > 0)

    def forget(self, run: DemoRun) -> None:
        shutil.rmtree(run.workdir / "msk", ignore_errors=True)
        (run.workdir / HEATMAP_PNG).unlink(missing_ok=True)

    def train(self, run: DemoRun, console: Console) -> DemoModel:
        from training.mura_abnormality.train import preset, train_mura

        # Studies of other seeds than the demo's: the model never sees them in training.
        config = preset(
            run.options.mura_preset, out_dir=run.model_dir / PIPELINE, seed=run.seed + 4000
        )
        console.print(
            f"training a small {PIPELINE} model ({config.architecture}, {config.size} px, "
            f"{config.synthetic_studies} synthetic studies); the paper's DenseNet-169 stays "
            "the default of `dicom-node train mura_abnormality`"
        )
        trained = train_mura(config)
        overall = trained.report.overall
        return DemoModel(
            trained.folder,
            f"on {overall.studies} held-out synthetic studies accuracy "
            f"{overall.accuracy_pct:.1f} %, AUROC {overall.auroc:.3f}, sensitivity "
            f"{overall.sensitivity_pct:.1f} %, specificity {overall.specificity_pct:.1f} %",
        )

    def write_cases(self, run: DemoRun, console: Console) -> list[DemoCase]:
        from training.synthetic.msk_films import make_msk_study, write_msk_study

        folder = run.workdir / "msk"
        shutil.rmtree(folder, ignore_errors=True)
        cases = []
        with console.status("writing synthetic musculoskeletal studies"):
            for index in range(run.options.mura_studies):
                abnormal = index % 2 == 1
                region = REGIONS[(index // 2) % len(REGIONS)]
                study = make_msk_study(
                    run.seed + 5000 + index,
                    region=region,
                    views=2,
                    abnormality="hardware" if abnormal else None,
                    abnormal=abnormal,
                )
                written = write_msk_study(
                    folder / f"study{index + 1}",
                    study,
                    modality="CR" if index % 4 >= 2 else "DX",
                    series_per_view=abnormal,
                )
                lesion_views = [
                    uid
                    for uid, view in zip(written.sop_instance_uids, study.views, strict=True)
                    if view.abnormal
                ]
                cases.append(
                    DemoCase(
                        written.study_instance_uid,
                        PIPELINE,
                        list(written.files),
                        truth={
                            "abnormal": study.abnormal,
                            "abnormality": "hardware" if abnormal else None,
                            "region": region,
                            "views": len(study.views),
                            "series": len(set(written.series_instance_uids)),
                            "lesion_views": lesion_views,
                        },
                    )
                )
        console.print(
            f"{len(cases)} synthetic musculoskeletal studies in {folder} "
            f"({sum(1 for c in cases if c.truth['abnormal'])} with metal hardware)"
        )
        return cases

    def finish(self, run: DemoRun, cases: list[DemoCase]) -> None:
        """Write the first heat map SC's pixels as a PNG (an abnormal study's first)."""
        import pydicom
        from matplotlib.image import imsave

        ordered = sorted(cases, key=lambda c: not c.truth["abnormal"])
        for case in ordered:
            paths = case.output_paths.get("sc") or []
            if paths:
                png = run.workdir / HEATMAP_PNG
                png.parent.mkdir(parents=True, exist_ok=True)
                imsave(png, pydicom.dcmread(run.outputs_dir / paths[0]).pixel_array)
                case.extras["heatmap_png"] = png
                return

    def print_report(
        self, cases: list[DemoCase], model_version: str, run: DemoRun, console: Console
    ) -> None:
        from rich.table import Table

        thresholds = {c.summary.get("threshold") for c in cases} - {None}
        at = f" (abnormal at ≥ {thresholds.pop():.3f})" if len(thresholds) == 1 else ""
        table = Table(title=f"{PIPELINE} {model_version}: verdicts back in the PACS{at}")
        for column in ("study", "region", "views", "truth", "verdict", "p", "KOS", "in the PACS"):
            table.add_column(column, justify="left" if column in ("study", "region") else "right")
        for case in cases:
            probability = case.summary.get("study_probability")
            kos = case.summary.get("key_objects") or []
            table.add_row(
                "…" + case.study_instance_uid[-8:],
                str(case.truth["region"]),
                f"{case.truth['views']} ({case.truth['series']} series)",
                "abnormal" if case.truth["abnormal"] else "normal",
                verdict(case) or "—",
                "—" if probability is None else f"{probability:.3f}",
                f"{len(kos)} view{'s' * (len(kos) != 1)}" if kos else "—",
                ", ".join(case.outputs),
            )
        console.print(table)
        right = [c for c in cases if correct(c)]
        pngs = [c.extras["heatmap_png"] for c in cases if "heatmap_png" in c.extras]
        console.print(
            f"{len(right)} of {len(cases)} verdicts match the truth"
            + (f"; heat map: {pngs[0]}" if pngs else "")
        )

    def report_json(
        self, cases: list[DemoCase], model_version: str | None, trained: bool, run: DemoRun
    ) -> dict[str, Any]:
        if not cases:
            return {"mura": None}
        rows = []
        for case in cases:
            png = case.extras.get("heatmap_png")
            rows.append(
                {
                    "study_instance_uid": case.study_instance_uid,
                    "truth": case.truth,
                    "verdict": verdict(case),
                    "correct": correct(case),
                    "study_probability": case.summary.get("study_probability"),
                    "threshold": case.summary.get("threshold"),
                    "views": case.summary.get("views", []),
                    "key_objects": case.summary.get("key_objects", []),
                    "heatmap_png": None if png is None else str(Path(png)),
                    "in_pacs": case.outputs,
                    "state": case.state,
                }
            )
        return {"mura": {"model_version": model_version, "trained": trained, "studies": rows}}


DEMO = MuraAbnormalityDemo()
