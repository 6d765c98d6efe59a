"""``ct_body_part``'s part of ``dicom-node demo``: a synthetic CT phantom with known zones.

Writes one synthetic chest–abdomen–pelvis CT series (``training.synthetic.ct_phantoms``)
of about ``--ct-slices`` slices (``0``: no CT part), trains a small body part regressor
(the AlexNet variant) on other phantoms when none is active, and prints a table: the zones
found (z extent in mm, slices) beside the phantom's true ones, r, the anomaly flags, the
score range and where the SR and SC went. The SC's score plot is also written as
``ct_body_part_plot.png`` in the work folder, to open with any image viewer.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.demo_entry import DemoCase, DemoModel, DemoRun

if TYPE_CHECKING:
    from rich.console import Console

logger = logging.getLogger(__name__)

PIPELINE = "ct_body_part"
REGION = "chest_abdomen_pelvis"
PLOT_PNG = "ct_body_part_plot.png"


def true_zone_of(case: DemoCase, z_mm: float) -> str | None:
    """The phantom's zone at ``z_mm``; a boundary belongs to the zone above it."""
    zones: dict[str, tuple[float, float]] = case.truth["zones"]
    for name, (top, bottom) in sorted(zones.items(), key=lambda i: -i[1][0]):
        if bottom <= z_mm <= top:
            return name
    return None


def true_extent(case: DemoCase, zone: str) -> tuple[float, float, int] | None:
    """(z of the first, z of the last, count) of the slices in the phantom's ``zone``."""
    inside = [z for z in case.truth["z_positions"] if true_zone_of(case, z) == zone]
    if not inside:
        return None
    return max(inside), min(inside), len(inside)


class CtBodyPartDemo:
    """A CT series → ``ct_body_part``; ``--ct-slices``, ``--ct-size``, ``--ct-preset``."""

    pipeline = PIPELINE
    route = "ct"
    modalities: tuple[str, ...] = ("CT",)
    body_parts: tuple[str, ...] = ()
    classifies_for: tuple[str, ...] = ()

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--ct-slices",
            type=int,
            default=300,
            help="slices of the synthetic chest-abdomen-pelvis CT series (0: no CT part)",
        )
        parser.add_argument(
            "--ct-size", type=int, default=512, help="rows and columns of the CT slices"
        )
        parser.add_argument(
            "--ct-preset",
            default="demo",
            help="ct_body_part training preset when no model is active",
        )

    def check_options(self, options: argparse.Namespace) -> None:
        if options.ct_slices < 0 or options.ct_slices == 1:
            raise ValueError("--ct-slices must be 0 (no CT) or at least 2")

    def enabled(self, options: argparse.Namespace) -> bool:
        return bool(options.ct_slices > 0)

    def forget(self, run: DemoRun) -> None:
        shutil.rmtree(run.workdir / "ct", ignore_errors=True)
        (run.workdir / PLOT_PNG).unlink(missing_ok=True)

    def train(self, run: DemoRun, console: Console) -> DemoModel:
        from pipelines.ct_body_part.vgg16_init import default_init_path
        from training.ct_body_part.train import CROSS_CHECK_WARNING_PCT, preset, train_ubr

        name = run.options.ct_preset
        # Phantoms of other seeds than the demo's CT series.
        config = preset(name, out_dir=run.model_dir / PIPELINE, seed=run.seed + 2000)
        if config.init == "imagenet":  # the paper preset: VGG16 from the converted weights
            init = config.init_path or default_init_path(run.model_dir)
            if not Path(init).is_file():
                raise ValueError(
                    f"the {name!r} preset starts from the ImageNet VGG16 "
                    f"weights, which are not at {init}: run `dicom-node models vgg16-init "
                    "--config ...` with the demo's model store, or use --ct-preset demo"
                )
            config = replace(config, init_path=Path(init))
        start = "from scratch" if config.init == "scratch" else "from ImageNet weights"
        console.print(
            f"training a small {PIPELINE} model ({config.architecture} {start}, "
            f"{config.size} px, {config.synthetic_volumes} synthetic CT phantoms, "
            f"{config.iterations} iterations, no labels); the paper's VGG16 stays the default "
            "of `dicom-node train ct_body_part`"
        )
        trained = train_ubr(config)
        evaluation = trained.evaluation
        zones = (
            "—"
            if evaluation.zone_accuracy_pct is None
            else f"{evaluation.zone_accuracy_pct:.1f} % (paper, on real CT: "
            f"{evaluation.paper_zone_accuracy_pct} %)"
        )
        cross_check = trained.card.metrics.get("calibration_cross_check_pct")
        # The demo's lever is the preset: its short ones always cross-check low.
        longer = (
            " (a demo-sized model; `--ct-preset cpu` trains the README's, about half an hour)"
            if cross_check is not None and cross_check < CROSS_CHECK_WARNING_PCT
            else ""
        )
        return DemoModel(
            trained.folder,
            f"on {evaluation.volumes} held-out phantoms Spearman ρ "
            f"{evaluation.spearman_mean:.3f}, three-zone accuracy {zones}, anomalies flagged "
            f"in {evaluation.abnormal_flagged} of {evaluation.abnormal_volumes} reversed or "
            "mixed series; calibration cross-check "
            + ("—" if cross_check is None else f"{cross_check:.1f} %")
            + longer,
        )

    def write_cases(self, run: DemoRun, console: Console) -> list[DemoCase]:
        """One synthetic chest–abdomen–pelvis CT series of about ``--ct-slices`` slices."""
        from training.synthetic.ct_phantoms import write_ct_study

        folder = run.workdir / "ct"
        size = run.options.ct_size
        shutil.rmtree(folder, ignore_errors=True)
        with console.status(f"writing a synthetic CT series ({size}² pixels)"):
            # 1 mm asked for, then widened so that the region fits in ct_slices slices.
            series = write_ct_study(
                folder,
                run.seed + 3000,  # a phantom that is in no training set
                size=size,
                region=REGION,
                spacing_mm=1.0,
                max_slices=run.options.ct_slices,
            )
        z = [float(v) for v in series.z_positions]
        spacing = abs(z[0] - z[1]) if len(z) > 1 else 0.0
        console.print(
            f"a synthetic CT series in {folder}: {len(z)} slices of {size}² pixels, "
            f"{spacing:.2f} mm apart, {REGION.replace('_', '–')} of phantom {series.phantom_seed}"
        )
        truth = {
            "series_instance_uid": series.series_instance_uid,
            "region": series.region,
            "size": size,
            "spacing_mm": round(spacing, 3),
            "z_positions": z,  # of the slices as written
            # The phantom's: zone → (z top, z bottom).
            "zones": {k: (float(v[0]), float(v[1])) for k, v in series.zones.items()},
        }
        return [DemoCase(series.study_instance_uid, PIPELINE, list(series.files), truth=truth)]

    def finish(self, run: DemoRun, cases: list[DemoCase]) -> None:
        """Find the SC of the score plot among the outputs and write its pixels as a PNG."""
        import pydicom
        from matplotlib.image import imsave

        for case in cases:
            paths = case.output_paths.get("sc") or []
            if not paths:
                logger.warning("the CT result has no SC image: no plot to save")
                continue
            plot = run.outputs_dir / paths[0]
            case.extras["plot_dicom"] = plot
            pixels = pydicom.dcmread(plot).pixel_array
            png = run.workdir / PLOT_PNG
            png.parent.mkdir(parents=True, exist_ok=True)
            imsave(png, pixels)  # RGB, 8 bits: written as they are
            case.extras["plot_png"] = png

    def print_report(
        self, cases: list[DemoCase], model_version: str, run: DemoRun, console: Console
    ) -> None:
        for case in cases:
            _print_case(case, model_version, console)

    def report_json(
        self, cases: list[DemoCase], model_version: str | None, trained: bool, run: DemoRun
    ) -> dict[str, Any]:
        if not cases:
            return {"ct": None}
        return {"ct": _case_json(cases[0], model_version, trained)}


def _print_case(case: DemoCase, model_version: str, console: Console) -> None:
    """The CT table: zones found beside the phantom's, then r, flags, scores and outputs."""
    from rich.table import Table

    from pipelines.ct_body_part.zones import MIN_LINEARITY_R

    truth, summary = case.truth, case.summary
    table = Table(
        title=f"ct_body_part {model_version}: zones of the synthetic CT "
        f"(…{truth['series_instance_uid'][-12:]}, {len(truth['z_positions'])} slices "
        f"{truth['spacing_mm']:g} mm apart)",
        caption="z: first…last slice of the zone (patient z, the head is +); phantom's: the "
        "slices in its true zone",
    )
    for column in ("zone", "z (mm)", "length", "slices", "phantom's z (mm)", "slices"):
        table.add_column(column, justify="left" if column == "zone" else "right")
    found = {str(zone.get("zone")): zone for zone in summary.get("zones") or []}
    # Head to feet: the phantom's zones in the scan or found, then any other zone found.
    names = [z for z in truth["zones"] if z in found or true_extent(case, z) is not None]
    names += [z for z in found if z not in names]
    for name in names:
        zone = found.get(name)
        true = true_extent(case, name)
        table.add_row(
            name.replace("_", "/"),
            "not found" if zone is None else f"{zone['z_top_mm']:.1f}…{zone['z_bottom_mm']:.1f}",
            "—" if zone is None else f"{zone['length_mm']:.0f} mm",
            "—" if zone is None else str(zone["slices"]),
            "—" if true is None else f"{true[0]:.1f}…{true[1]:.1f}",
            "—" if true is None else str(true[2]),
        )
    console.print(table)
    r = summary.get("r")
    low, high = (summary.get("score_range") or [None, None])[:2]
    flags = [
        f"r below {MIN_LINEARITY_R:g}" if r is not None and r < MIN_LINEARITY_R else None,
        "scan direction not monotonic" if summary.get("monotonic") is False else None,
        "stack reversed" if summary.get("reversed") else None,
    ]
    raised = [flag for flag in flags if flag]
    console.print(
        f"r(slice, score) = {'—' if r is None else f'{r:.4f}'} (flagged below "
        f"{MIN_LINEARITY_R:g}); scores {'—' if low is None else f'{low:.2f} … {high:.2f}'}; "
        f"anomaly flags: {', '.join(raised) if raised else 'none'}"
    )
    console.print(
        f"SR and SC (score plot) {case.state} to the PACS; there now: "
        f"{', '.join(case.outputs) or '—'}"
    )
    if case.extras.get("plot_dicom") is not None:
        console.print(f"score plot: {case.extras['plot_dicom']} (DICOM SC)")
    if case.extras.get("plot_png") is not None:
        console.print(f"score plot as PNG: {case.extras['plot_png']}")


def _case_json(case: DemoCase, model_version: str | None, trained: bool) -> dict[str, Any]:
    truth, summary = case.truth, case.summary
    zones = []
    for zone in summary.get("zones") or []:
        true = true_extent(case, str(zone.get("zone")))
        zones.append(
            {
                **zone,
                "true_z_top_mm": None if true is None else true[0],
                "true_z_bottom_mm": None if true is None else true[1],
                "true_slices": None if true is None else true[2],
            }
        )
    plot_dicom, plot_png = case.extras.get("plot_dicom"), case.extras.get("plot_png")
    return {
        "model_version": model_version,
        "trained": trained,
        "study_instance_uid": case.study_instance_uid,
        "series_instance_uid": truth["series_instance_uid"],
        "region": truth["region"],
        "slices": len(truth["z_positions"]),
        "size": truth["size"],
        "spacing_mm": truth["spacing_mm"],
        "zones": zones,
        "true_zones": {
            zone: {"z_top_mm": e[0], "z_bottom_mm": e[1], "slices": e[2]}
            for zone in truth["zones"]
            if (e := true_extent(case, zone)) is not None
        },
        "r": summary.get("r"),
        "monotonic": summary.get("monotonic"),
        "reversed": summary.get("reversed"),
        "anomaly": summary.get("anomaly"),
        "notes": summary.get("notes", []),
        "score_range": summary.get("score_range"),
        "in_pacs": case.outputs,
        "state": case.state,
        "plot_dicom": None if plot_dicom is None else str(plot_dicom),
        "plot_png": None if plot_png is None else str(plot_png),
    }


DEMO = CtBodyPartDemo()
