"""The model folder (``pipelines.model_store``): card round trip, checksum, validation."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.model_store import (
    CARD_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    ModelCard,
    ModelStoreError,
    check_version,
    file_sha256,
    new_version,
    read_model_card,
    write_model_card,
)

CREATED = datetime(2026, 3, 1, 8, 30, 15, tzinfo=UTC)


def weights_bytes(seed: int = 0, size: int = 4096) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def make_card(weights_sha256: str, **fields: Any) -> ModelCard:
    values: dict[str, Any] = {
        "pipeline": "hand_orientation",
        "version": "20260301.083015",
        "created": CREATED,
        "architecture": {"name": "resnet50", "outputs": 2, "fine_tuned": ["layer4"]},
        "input_spec": {"size": [224, 224], "mean": [0.485, 0.456, 0.406], "channels": 3},
        "weights_sha256": weights_sha256,
        "training_data": {"films": 1234, "sites": ["A", "B"]},
        "metrics": {"mae_deg": 2.79, "within_4_deg": 0.844, "n": 100},
    }
    values.update(fields)
    return ModelCard(**values)


def make_folder(folder: Path, *, seed: int = 0, **fields: Any) -> ModelCard:
    folder.mkdir(parents=True, exist_ok=True)
    weights_file = str(fields.get("weights_file", WEIGHTS_FILE))
    (folder / weights_file).write_bytes(weights_bytes(seed))
    card = make_card(file_sha256(folder / weights_file), **fields)
    write_model_card(folder, card)
    return card


def card_json(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def rewrite_card(folder: Path, data: Any) -> None:
    (folder / CARD_FILE).write_text(json.dumps(data), encoding="utf-8")


# -- round trip ----------------------------------------------------------------------------------


def test_card_round_trip(tmp_path: Path) -> None:
    card = make_folder(tmp_path / "m")
    read = read_model_card(tmp_path / "m")
    assert read == card
    assert read.created == CREATED and read.created.tzinfo is not None
    assert read.metrics == {"mae_deg": 2.79, "within_4_deg": 0.844, "n": 100}
    assert read.architecture["fine_tuned"] == ["layer4"]
    assert read.training_data == {"films": 1234, "sites": ["A", "B"]}


def test_card_json_layout(tmp_path: Path) -> None:
    card = make_folder(tmp_path / "m")
    data = card_json(tmp_path / "m")
    assert data["format"] == FORMAT_VERSION
    assert data["weights"] == {"file": WEIGHTS_FILE, "sha256": card.weights_sha256}
    assert data["created"] == "2026-03-01T08:30:15+00:00"
    assert (data["pipeline"], data["version"]) == ("hand_orientation", "20260301.083015")
    assert not list(tmp_path.joinpath("m").glob(".*.tmp"))  # the temporary file is gone


def test_round_trip_keeps_another_time_zone(tmp_path: Path) -> None:
    created = datetime(2026, 3, 1, 9, 30, 15, tzinfo=timezone(timedelta(hours=1)))
    card = make_folder(tmp_path / "m", created=created)
    read = read_model_card(tmp_path / "m")
    assert read.created == card.created == CREATED  # the same instant
    assert read.created.utcoffset() == timedelta(hours=1)


def test_other_weights_file_name(tmp_path: Path) -> None:
    card = make_folder(tmp_path / "m", weights_file="model.safetensors")
    assert read_model_card(tmp_path / "m") == card
    assert card_json(tmp_path / "m")["weights"]["file"] == "model.safetensors"


def test_optional_fields_may_be_missing(tmp_path: Path) -> None:
    card = make_folder(tmp_path / "m")
    data = card_json(tmp_path / "m")
    del data["training_data"], data["metrics"]
    data["weights"] = {"sha256": card.weights_sha256}
    rewrite_card(tmp_path / "m", data)
    read = read_model_card(tmp_path / "m")
    assert (read.training_data, read.metrics, read.weights_file) == ({}, {}, WEIGHTS_FILE)


def test_writing_again_replaces_the_card(tmp_path: Path) -> None:
    card = make_folder(tmp_path / "m")
    write_model_card(tmp_path / "m", replace(card, metrics={"mae_deg": 1.5}))
    assert read_model_card(tmp_path / "m").metrics == {"mae_deg": 1.5}


# -- checksum --------------------------------------------------------------------------------


def test_changed_weights_are_refused(tmp_path: Path) -> None:
    card = make_folder(tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_FILE).write_bytes(weights_bytes(seed=1))
    with pytest.raises(ModelStoreError) as info:
        read_model_card(tmp_path / "m")
    message = str(info.value)
    assert "corrupt or replaced" in message
    assert card.weights_sha256[:12] in message
    assert file_sha256(tmp_path / "m" / WEIGHTS_FILE)[:12] in message
    # Without verification the card itself still reads.
    assert read_model_card(tmp_path / "m", verify=False) == card


def test_truncated_weights_are_refused(tmp_path: Path) -> None:
    make_folder(tmp_path / "m")
    path = tmp_path / "m" / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ModelStoreError, match="corrupt or replaced"):
        read_model_card(tmp_path / "m")


def test_missing_weights(tmp_path: Path) -> None:
    make_folder(tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelStoreError, match=f"weights file {WEIGHTS_FILE} is missing"):
        read_model_card(tmp_path / "m")
    assert read_model_card(tmp_path / "m", verify=False).pipeline == "hand_orientation"


def test_missing_card(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / WEIGHTS_FILE).write_bytes(weights_bytes())
    with pytest.raises(ModelStoreError, match=f"is not a model folder: it has no {CARD_FILE}"):
        read_model_card(tmp_path / "m")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="is not a model folder"):
        read_model_card(tmp_path / "nowhere")


# -- malformed cards ---------------------------------------------------------------------------


def test_malformed_json(tmp_path: Path) -> None:
    make_folder(tmp_path / "m")
    (tmp_path / "m" / CARD_FILE).write_text('{"format": 1, "pipeline": ', encoding="utf-8")
    with pytest.raises(ModelStoreError, match="cannot be read"):
        read_model_card(tmp_path / "m")


def test_card_that_is_not_utf8(tmp_path: Path) -> None:
    make_folder(tmp_path / "m")
    (tmp_path / "m" / CARD_FILE).write_bytes(b'{"pipeline": "\xff\xfe"}')
    with pytest.raises(ModelStoreError, match="cannot be read"):
        read_model_card(tmp_path / "m")


def test_card_that_is_not_an_object(tmp_path: Path) -> None:
    make_folder(tmp_path / "m")
    rewrite_card(tmp_path / "m", ["format", 1])
    with pytest.raises(ModelStoreError, match="is not a JSON object"):
        read_model_card(tmp_path / "m")


@pytest.mark.parametrize("format_number", [2, 0, None, "1"])
def test_wrong_format_number(tmp_path: Path, format_number: object) -> None:
    make_folder(tmp_path / "m")
    data = card_json(tmp_path / "m")
    data["format"] = format_number
    rewrite_card(tmp_path / "m", data)
    with pytest.raises(ModelStoreError, match=f"this node reads {FORMAT_VERSION}"):
        read_model_card(tmp_path / "m")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("pipeline"),
        lambda d: d.pop("architecture"),
        lambda d: d.pop("input_spec"),
        lambda d: d.pop("weights"),
        lambda d: d["weights"].pop("sha256"),
        lambda d: d.update(weights="weights.pt"),
        lambda d: d.update(architecture=5),
        lambda d: d.update(created="yesterday"),
    ],
    ids=[
        "no-pipeline",
        "no-architecture",
        "no-input-spec",
        "no-weights",
        "no-sha",
        "weights-not-object",
        "architecture-not-object",
        "bad-date",
    ],
)
def test_incomplete_card(tmp_path: Path, change: Any) -> None:
    make_folder(tmp_path / "m")
    data = card_json(tmp_path / "m")
    change(data)
    rewrite_card(tmp_path / "m", data)
    with pytest.raises(ModelStoreError, match="incomplete or malformed"):
        read_model_card(tmp_path / "m")


def test_naive_created_in_the_file_is_refused(tmp_path: Path) -> None:
    make_folder(tmp_path / "m")
    data = card_json(tmp_path / "m")
    data["created"] = "2026-03-01T08:30:15"
    rewrite_card(tmp_path / "m", data)
    with pytest.raises(ModelStoreError, match="created must carry a time zone"):
        read_model_card(tmp_path / "m")


def test_bad_version_in_the_file_is_refused(tmp_path: Path) -> None:
    make_folder(tmp_path / "m")
    data = card_json(tmp_path / "m")
    data["version"] = "../escape"
    rewrite_card(tmp_path / "m", data)
    with pytest.raises(ModelStoreError, match="model version '../escape' must be"):
        read_model_card(tmp_path / "m")


def test_weights_file_outside_the_folder_is_refused(tmp_path: Path) -> None:
    card = make_folder(tmp_path / "m")
    data = card_json(tmp_path / "m")
    data["weights"] = {"file": "../other/weights.pt", "sha256": card.weights_sha256}
    rewrite_card(tmp_path / "m", data)
    with pytest.raises(ModelStoreError, match="must be a plain name"):
        read_model_card(tmp_path / "m")


# -- the card's own checks ---------------------------------------------------------------------


SHA = "0" * 64


def test_a_valid_card() -> None:
    assert make_card(SHA).version == "20260301.083015"


@pytest.mark.parametrize(
    "version",
    ["../x", "", "a" * 65, ".hidden", "-x", "a/b", "a b", "v1\n", "ü1", "a\\b"],
    ids=[
        "dotdot",
        "empty",
        "65-chars",
        "leading-dot",
        "leading-dash",
        "slash",
        "space",
        "newline",
        "non-ascii",
        "backslash",
    ],
)
def test_bad_version_names(version: str) -> None:
    with pytest.raises(ModelStoreError, match="must be 1-64 letters, digits"):
        check_version(version)
    with pytest.raises(ModelStoreError, match="must be 1-64 letters, digits"):
        make_card(SHA, version=version)


@pytest.mark.parametrize("version", ["a" * 64, "1", "v1.2.3", "20260301.083015", "A_b-C.9"])
def test_good_version_names(version: str) -> None:
    assert check_version(version) == version
    assert make_card(SHA, version=version).version == version


@pytest.mark.parametrize("pipeline", ["", "Hand", "1hand", "hand-orientation", "hand/x"])
def test_bad_pipeline_names(pipeline: str) -> None:
    with pytest.raises(ModelStoreError, match="is not a pipeline name"):
        make_card(SHA, pipeline=pipeline)


@pytest.mark.parametrize("sha", ["0" * 63, "0" * 65, "A" * 64, "g" * 64, ""])
def test_bad_checksums(sha: str) -> None:
    with pytest.raises(ModelStoreError, match="64 lower-case hexadecimal digits"):
        make_card(sha)


def test_naive_datetime_refused() -> None:
    with pytest.raises(ModelStoreError, match="created must carry a time zone"):
        make_card(SHA, created=datetime(2026, 3, 1, 8, 30))


@pytest.mark.parametrize("name", ["../weights.pt", "sub/weights.pt", "/abs/weights.pt", "."])
def test_weights_file_must_be_a_plain_name(name: str) -> None:
    with pytest.raises(ModelStoreError, match="must be a plain name"):
        make_card(SHA, weights_file=name)


# -- helpers -------------------------------------------------------------------------------------


def test_new_version_format() -> None:
    assert new_version(datetime(2026, 11, 22, 14, 30, 5, tzinfo=UTC)) == "20261122.143005"
    assert new_version(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "20260102.030405"


def test_new_version_now_is_a_valid_version() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    version = new_version()
    after = datetime.now(UTC)
    assert check_version(version) == version
    stamp = datetime.strptime(version, "%Y%m%d.%H%M%S").replace(tzinfo=UTC)
    assert before <= stamp <= after


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) * 2 + 17])
def test_file_sha256_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = weights_bytes(seed=size, size=size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_the_no_model_marker_is_not_a_model_version() -> None:
    from pipelines.model_store import NO_MODEL_VERSION, ModelStoreError, check_version

    for name in (NO_MODEL_VERSION, NO_MODEL_VERSION.upper()):
        with pytest.raises(ModelStoreError, match="reserved"):
            check_version(name)
    assert check_version("none-1") == "none-1"
