"""The bone_age pipeline on synthetic paediatric hand films, with real model folders.

Most tests use a model with seeded random weights (``write_seeded_bone_age_model``): a
real network from a real folder, whose answer depends on the pixels, which is what the
paths (which film, which sex input, which dates) need. One test uses the ``smoke``
model trained on synthetic hands, whose answers must follow the true bone age.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines import PipelineRegistry
from pipelines.bone_age import BoneAge
from pipelines.bone_age.overlay import NOT_FOR_DIAGNOSIS
from pipelines.bone_age.pipeline import (
    BONE_AGE_CONCEPT,
    CHRONOLOGICAL_AGE_CONCEPT,
    DIFFERENCE_CONCEPT,
    INPUT_FILM_CONCEPT,
    SEX_INPUT_CONCEPT,
    chronological_age_months,
)
from pipelines.contract import PipelineResult, UpstreamResult
from pipelines.errors import ModelMissing, PipelineInputError
from tests.support.bone_age import orientation_upstream, series_of, write_film
from tests.support.models import smoke_bone_age_model, write_seeded_bone_age_model
from training.synthetic.paediatric_hands import render_paediatric_hand


@pytest.fixture
def seeded_model(tmp_path: Path) -> Path:
    folder = tmp_path / "bone_age_model"
    write_seeded_bone_age_model(folder)
    return folder


def hand_image(age: float = 120.0, sex: str = "F", seed: int = 5, size: int = 160) -> np.ndarray:
    return render_paediatric_hand(age, sex, seed, size=size, markers=True).image[:, 12 : size - 12]


def films(tmp_path: Path, images: list[np.ndarray], **header: Any) -> tuple[list[Any], list[Path]]:
    datasets, paths = [], []
    for index, image in enumerate(images, start=1):
        path = tmp_path / f"film{index}.dcm"
        datasets.append(write_film(path, image, index=index, **header))
        paths.append(path)
    return datasets, paths


def values(result: PipelineResult, concept: object) -> list[float]:
    return [m.value for m in result.measurements if m.concept == concept]


def finding(result: PipelineResult, concept: object) -> list[str]:
    return [f.value.meaning for f in result.findings if f.concept == concept]


def test_bone_age_chronological_age_and_difference(tmp_path: Path, seeded_model: Path) -> None:
    datasets, paths = films(tmp_path, [hand_image()], birth_date="20150704", study_date="20260301")
    result = BoneAge().run(series_of(datasets, paths, seeded_model))
    (months,) = values(result, BONE_AGE_CONCEPT)
    (chronological,) = values(result, CHRONOLOGICAL_AGE_CONCEPT)
    (difference,) = values(result, DIFFERENCE_CONCEPT)
    expected = round((date(2026, 3, 1) - date(2015, 7, 4)).days * 12 / 365.25, 1)
    assert chronological == expected
    assert difference == pytest.approx(months - chronological, abs=0.051)
    assert {m.unit for m in result.measurements} == {"mo"}
    assert {m.tracking_uid for m in result.measurements} == {str(datasets[0].SOPInstanceUID)}
    entries: list[dict[str, Any]] = result.summary["films"]  # type: ignore[assignment]
    (entry,) = entries
    assert entry["bone_age_months"] == months
    assert entry["chronological_age_months"] == chronological
    assert entry["sex_input"] == "female"
    assert finding(result, SEX_INPUT_CONCEPT) == ["Female"]
    assert finding(result, INPUT_FILM_CONCEPT) == ["Film as received"]
    assert "not routed" in str(result.summary["upstream"])


@pytest.mark.parametrize(
    ("birth", "study"), [(None, "20260301"), ("20150704", None), ("20270101", "20260301")]
)
def test_no_chronological_age_without_both_dates_in_order(
    tmp_path: Path, seeded_model: Path, birth: str | None, study: str | None
) -> None:
    datasets, paths = films(tmp_path, [hand_image()], birth_date=birth, study_date=study)
    result = BoneAge().run(series_of(datasets, paths, seeded_model))
    assert len(values(result, BONE_AGE_CONCEPT)) == 1
    assert values(result, CHRONOLOGICAL_AGE_CONCEPT) == []
    assert values(result, DIFFERENCE_CONCEPT) == []
    assert "chronological_age_months" not in result.summary["films"][0]  # type: ignore[index]


def test_chronological_age_from_the_header() -> None:
    class Header:
        PatientBirthDate = "20200101"
        StudyDate = "20210101"

    assert chronological_age_months(Header()) == round(366 * 12 / 365.25, 1)
    Header.StudyDate = "2021-01-01"
    assert chronological_age_months(Header()) is None


@pytest.mark.parametrize("sex", ["O", "", None])
def test_unknown_sex_takes_the_third_input_and_says_so(
    tmp_path: Path, seeded_model: Path, sex: str | None
) -> None:
    datasets, paths = films(tmp_path, [hand_image()], sex=sex)
    result = BoneAge().run(series_of(datasets, paths, seeded_model))
    assert finding(result, SEX_INPUT_CONCEPT) == ["Unknown"]
    assert result.summary["films"][0]["sex_input"] == "unknown"  # type: ignore[index]


def test_unknown_sex_averaged_is_the_mean_of_male_and_female(
    tmp_path: Path, seeded_model: Path
) -> None:
    image = hand_image()
    answers = {}
    for sex in ("M", "F", "O"):
        folder = tmp_path / sex
        folder.mkdir()
        datasets, paths = films(folder, [image], sex=sex)
        result = BoneAge(unknown_sex="average").run(series_of(datasets, paths, seeded_model))
        (answers[sex],) = values(result, BONE_AGE_CONCEPT)
        if sex == "O":
            assert finding(result, SEX_INPUT_CONCEPT) == ["Unknown: mean of male and female"]
    assert answers["M"] != answers["F"]
    assert answers["O"] == pytest.approx((answers["M"] + answers["F"]) / 2, abs=0.11)


def test_attention_map_sc_over_the_hand(tmp_path: Path, seeded_model: Path) -> None:
    datasets, paths = films(tmp_path, [hand_image(), hand_image(60.0, "M", 9)])
    result = BoneAge().run(series_of(datasets, paths, seeded_model))
    assert len(result.derived_images) == 2
    for image, ds in zip(result.derived_images, datasets, strict=True):
        assert image.kind == "rgb_overlay" and image.burned_in_text
        assert image.source_sop_instance_uid == str(ds.SOPInstanceUID)
        assert image.pixels.shape[1] >= 512
        # the colours of the map: not a grey picture
        assert np.abs(image.pixels[..., 0].astype(int) - image.pixels[..., 2]).max() > 50
    assert NOT_FOR_DIAGNOSIS == "NOT FOR DIAGNOSIS"
    quiet = BoneAge(overlay=False).run(series_of(datasets, paths, seeded_model))
    assert quiet.derived_images == ()
    assert values(quiet, BONE_AGE_CONCEPT) == values(result, BONE_AGE_CONCEPT)


def test_an_undecodable_file_is_skipped_with_its_reason(tmp_path: Path, seeded_model: Path) -> None:
    datasets, paths = films(tmp_path, [hand_image()])
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 300)
    result = BoneAge().run(series_of(datasets, [junk, *paths], seeded_model))
    assert len(values(result, BONE_AGE_CONCEPT)) == 1
    reasons: list[str] = result.summary["skipped"]  # type: ignore[assignment]
    (reason,) = reasons
    assert "junk.dcm" in reason


def test_nothing_decodable_is_an_input_error(tmp_path: Path, seeded_model: Path) -> None:
    datasets, _ = films(tmp_path, [hand_image()])
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a film")
    with pytest.raises(PipelineInputError, match="no film"):
        BoneAge().run(series_of(datasets, [junk], seeded_model))


def test_no_model_says_how_to_get_one(tmp_path: Path) -> None:
    datasets, paths = films(tmp_path, [hand_image()])
    with pytest.raises(ModelMissing, match="dicom-node train bone_age"):
        BoneAge().run(series_of(datasets, paths, None))


@pytest.mark.parametrize(
    "options",
    [
        {"unknown_sex": "male"},
        {"overlay": "yes"},
        {"max_overlay_side": 100},
        {"max_overlay_side": 512.5},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BoneAge(**options)


def test_registered_to_run_after_hand_orientation() -> None:
    registry = PipelineRegistry()
    assert registry.runs_after("bone_age") == "hand_orientation"
    assert isinstance(registry.get("bone_age"), BoneAge)
    assert registry.order_problems(["hand_orientation", "bone_age"]) == []


def test_bone_age_reads_the_upright_film_an_orientation_sensitive_model_tells(
    tmp_path: Path, seeded_model: Path
) -> None:
    """The issue's check, at unit level: a model whose answer changes when the film is
    turned gives, on the turned film with hand_orientation's result, the answer it gives
    on the upright film, and not the one it gives on the turned film as received."""
    upright = hand_image()
    up_dir, turned_dir = tmp_path / "upright", tmp_path / "turned"
    up_dir.mkdir()
    turned_dir.mkdir()
    up_sets, up_paths = films(up_dir, [upright])
    turned_sets, turned_paths = films(turned_dir, [np.ascontiguousarray(np.rot90(upright))])
    pipeline = BoneAge()
    (on_upright,) = values(
        pipeline.run(series_of(up_sets, up_paths, seeded_model)), BONE_AGE_CONCEPT
    )
    as_received = pipeline.run(series_of(turned_sets, turned_paths, seeded_model))
    (on_turned,) = values(as_received, BONE_AGE_CONCEPT)
    assert abs(on_turned - on_upright) >= 0.3  # the model is orientation-sensitive
    for gsps in ("beside", "instead"):
        after = orientation_upstream(tmp_path / gsps, turned_sets, turned_paths, 180.0, gsps=gsps)
        result = pipeline.run(series_of(turned_sets, turned_paths, seeded_model, after=after))
        (answer,) = values(result, BONE_AGE_CONCEPT)
        assert answer == pytest.approx(on_upright, abs=0.25), gsps
        expected = (
            "Upright film from hand orientation"
            if gsps == "beside"
            else ("Film turned by hand orientation's rotation")
        )
        assert finding(result, INPUT_FILM_CONCEPT) == [expected]
    failed = UpstreamResult("hand_orientation", "failed", "const-1", error="no model")
    result = pipeline.run(series_of(turned_sets, turned_paths, seeded_model, after=failed))
    assert values(result, BONE_AGE_CONCEPT) == [on_turned]
    assert "failed (no model)" in str(result.summary["upstream"])
    assert finding(result, INPUT_FILM_CONCEPT) == ["Film as received"]


@pytest.fixture(scope="module")
def smoke_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return smoke_bone_age_model(tmp_path_factory.getbasetemp() / "bone-age-smoke")


def test_a_trained_model_follows_the_true_bone_age(tmp_path: Path, smoke_model: Any) -> None:
    ages = [20.0, 60.0, 100.0, 140.0, 180.0, 210.0]
    images = [
        render_paediatric_hand(age, "MF"[i % 2], 501 + i, size=192).image
        for i, age in enumerate(ages)
    ]
    datasets, paths = films(tmp_path, images)
    for ds, path, i in zip(datasets, paths, range(len(ages)), strict=True):
        ds.PatientSex = "MF"[i % 2]
        ds.save_as(path, enforce_file_format=True)
    result = BoneAge().run(series_of(datasets, paths, smoke_model.folder, smoke_model.card.version))
    predicted = values(result, BONE_AGE_CONCEPT)
    assert len(predicted) == len(ages)
    assert float(np.corrcoef(predicted, ages)[0, 1]) > 0.7
    assert predicted[0] < predicted[-1]
    assert result.summary["architecture"] == "vgg_tiny"
    assert [f["sex_input"] for f in result.summary["films"]] == [  # type: ignore[attr-defined]
        "male",
        "female",
    ] * 3
