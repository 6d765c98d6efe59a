"""The pure parts of ``benchmarks/soak.py``: arguments, missing-instance accounting, the
RSS slope and the choice of settled samples. The soak itself is not run here."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import soak


def test_defaults_and_overrides() -> None:
    args = soak.parse_args([])
    assert (args.minutes, args.senders, args.report_every) == (10.0, 4, 30.0)
    assert args.json is None and args.workdir is None and not args.keep

    args = soak.parse_args(
        ["--minutes", "2", "--senders", "6", "--report-every", "5", "--json", "out.json"]
    )
    assert (args.minutes, args.senders, args.report_every) == (2.0, 6, 5.0)
    assert args.json == Path("out.json")


@pytest.mark.parametrize(
    "argv", [["--minutes", "0"], ["--senders", "0"], ["--report-every", "-1"], ["--senders", "x"]]
)
def test_nonsense_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        soak.parse_args(argv)


def test_missing_instances_counts_only_acknowledged_ones() -> None:
    report = soak.missing_instances(
        acknowledged=["1.1", "1.2", "1.3", "1.4"],
        on_disk=["1.1", "1.2", "1.4", "9.9"],  # 9.9: stored, its answer lost: not missing
        indexed=["1.1", "1.3", "1.4", "9.9"],
    )
    assert report.acknowledged == 4
    assert report.missing_on_disk == ("1.3",)
    assert report.missing_in_index == ("1.2",)
    assert report.missing == ("1.2", "1.3")
    assert not report.ok


def test_nothing_missing_when_everything_is_there() -> None:
    report = soak.missing_instances(["1.1", "1.2"], ["1.2", "1.1"], ["1.1", "1.2", "1.3"])
    assert report.ok and report.missing == ()
    assert soak.missing_instances([], [], []).ok


def test_rss_slope_ignores_the_warm_up_half() -> None:
    # First minute: steep warm-up (100 -> 400 MiB); second minute: +3 MiB per minute.
    warm_up = [(t, 100.0 + 5.0 * t) for t in range(0, 60, 2)]
    steady = [(60.0 + t, 400.0 + 3.0 * t / 60.0) for t in range(0, 61, 2)]
    assert soak.rss_slope(warm_up + steady) == pytest.approx(3.0, abs=1e-6)
    # Fitted over everything, the warm-up dominates.
    whole = soak.rss_slope(warm_up + steady, from_fraction=0.0)
    assert whole is not None and whole > 100.0


def test_rss_slope_of_a_flat_and_a_falling_series() -> None:
    assert soak.rss_slope([(float(t), 250.0) for t in range(0, 120, 2)]) == pytest.approx(0.0)
    falling = [(float(t), 300.0 - t / 6.0) for t in range(0, 120, 2)]  # -10 MiB per minute
    assert soak.rss_slope(falling) == pytest.approx(-10.0)


def test_rss_slope_needs_enough_samples() -> None:
    assert soak.rss_slope([]) is None
    assert soak.rss_slope([(0.0, 1.0), (10.0, 2.0)]) is None
    assert soak.rss_slope([(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)]) is None  # no time span


def test_settled_leaves_out_missing_and_young_workers() -> None:
    samples = [
        {"t": 0.0, "workers": 1.0, "youngest_worker_s": 30.0},
        {"t": 2.0, "workers": 0.0, "youngest_worker_s": 0.0},  # just killed
        {"t": 4.0, "workers": 1.0, "youngest_worker_s": 1.5},  # just respawned
        {"t": 30.0, "workers": 1.0, "youngest_worker_s": 27.5},
    ]
    assert [s["t"] for s in soak.settled(samples, workers=1, settle_s=20.0)] == [0.0, 30.0]
    assert soak.settled(samples, workers=2, settle_s=20.0) == []


def test_the_node_configuration_routes_ct_to_the_soak_pipeline(tmp_path: Path) -> None:
    import tomllib

    from dicom_node.settings import NodeSettings

    text = soak.node_config(tmp_path, port=11112, destination_port=11113, workers=2)
    settings = NodeSettings.model_validate(tomllib.loads(text))
    (route,) = settings.routes
    assert route.pipelines == ("soak_stats",) and route.destinations == ("pacs",)
    (destination,) = settings.destinations
    assert (destination.name, destination.port) == ("pacs", 11113)
    assert settings.workers == 2
    assert settings.extra_pipelines == {"soak_stats": "benchmarks.soak:SoakStats"}
