"""The model folder: one trained model, self-describing, checked by its checksum.

Every pipeline with a network keeps its trained models in this form::

    <folder>/
        model.json     what the model is (see ``ModelCard``)
        weights.pt     the network's state dict (``torch.save``)
        ...            anything else training left beside it (evaluation report, plots)

``model.json`` names the pipeline and version, when it was made, the architecture and
input spec the pipeline needs to rebuild and feed the network, a summary of the training
data, the evaluation metrics and the SHA-256 of the weights file. ``read_model_card``
checks that checksum, so a truncated or swapped weights file is refused rather than run.

The node registers folders in its database and marks one version per pipeline active
(``dicom-node models``); this module only reads and writes folders and imports neither
``dicom_node`` nor ``torch`` (weights are loaded by the pipeline that owns them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from pipelines.errors import ModelMissing

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
FORMAT_VERSION = 1
#: The version the node records for a job whose pipeline had no model; no model may use it.
NO_MODEL_VERSION = "none"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


LoadedModel = TypeVar("LoadedModel")


class ModelStoreError(ValueError):
    """A model folder is missing, incomplete, or does not match its card."""


@dataclass(frozen=True)
class ModelCard:
    """What ``model.json`` says about a model."""

    pipeline: str
    version: str
    created: datetime
    architecture: dict[str, Any]
    input_spec: dict[str, Any]
    weights_sha256: str
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_file: str = WEIGHTS_FILE
    #: Settings fitted after training from labelled data, which the pipeline applies to
    #: the network's output (e.g. ct_body_part's zone thresholds); empty when none.
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.pipeline or not re.fullmatch(r"[a-z][a-z0-9_]*", self.pipeline):
            raise ModelStoreError(f"pipeline name {self.pipeline!r} is not a pipeline name")
        check_version(self.version)
        if not _SHA256.fullmatch(self.weights_sha256):
            raise ModelStoreError("weights_sha256 must be 64 lower-case hexadecimal digits")
        if self.created.tzinfo is None:
            raise ModelStoreError("created must carry a time zone")
        if Path(self.weights_file).name != self.weights_file:
            raise ModelStoreError(f"weights file {self.weights_file!r} must be a plain name")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "pipeline": self.pipeline,
            "version": self.version,
            "created": self.created.isoformat(),
            "architecture": self.architecture,
            "input_spec": self.input_spec,
            "training_data": self.training_data,
            "metrics": self.metrics,
            "weights": {"file": self.weights_file, "sha256": self.weights_sha256},
            **({"calibration": self.calibration} if self.calibration else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelCard:
        if data.get("format") != FORMAT_VERSION:
            raise ModelStoreError(
                f"{CARD_FILE} has format {data.get('format')!r}; this node reads {FORMAT_VERSION}"
            )
        try:
            weights = data["weights"]
            return cls(
                pipeline=str(data["pipeline"]),
                version=str(data["version"]),
                created=datetime.fromisoformat(str(data["created"])),
                architecture=dict(data["architecture"]),
                input_spec=dict(data["input_spec"]),
                weights_sha256=str(weights["sha256"]),
                training_data=dict(data.get("training_data") or {}),
                metrics=dict(data.get("metrics") or {}),
                weights_file=str(weights.get("file", WEIGHTS_FILE)),
                calibration=dict(data.get("calibration") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelStoreError):
                raise
            raise ModelStoreError(f"{CARD_FILE} is incomplete or malformed: {exc!r}") from exc


def check_version(version: str) -> str:
    """A model version is 1–64 characters of letters, digits, ``.``, ``_`` and ``-``."""
    if version.lower() == NO_MODEL_VERSION:
        raise ModelStoreError(f"model version {version!r} is reserved (it marks 'no model')")
    if not _VERSION.fullmatch(version):
        raise ModelStoreError(
            f"model version {version!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return version


def new_version(now: datetime | None = None) -> str:
    """A version name from the time: ``20261122.143005``."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d.%H%M%S")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_model_card(folder: str | Path, *, verify: bool = True) -> ModelCard:
    """Read ``folder/model.json``; with ``verify``, check the weights file's SHA-256."""
    folder = Path(folder)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise ModelStoreError(f"{folder} is not a model folder: it has no {CARD_FILE}")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelStoreError(f"{card_path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelStoreError(f"{card_path} is not a JSON object")
    card = ModelCard.from_json(data)
    if verify:
        weights = folder / card.weights_file
        if not weights.is_file():
            raise ModelStoreError(f"{folder}: weights file {card.weights_file} is missing")
        actual = file_sha256(weights)
        if actual != card.weights_sha256:
            raise ModelStoreError(
                f"{folder}: {card.weights_file} has SHA-256 {actual[:12]}…, "
                f"but {CARD_FILE} says {card.weights_sha256[:12]}… (corrupt or replaced)"
            )
    return card


def read_pipeline_card(folder: Path, pipeline: str) -> ModelCard:
    """``read_model_card`` of a folder that must hold a model of ``pipeline``."""
    card = read_model_card(folder)
    if card.pipeline != pipeline:
        raise ModelStoreError(f"{folder} is a {card.pipeline} model, not a {pipeline} one")
    return card


def load_weights(network: Any, folder: Path, card: ModelCard) -> None:
    """Load the card's (verified) weights file into ``network`` (a torch module) and put it
    in eval mode; ``ModelStoreError`` when they do not fit it."""
    import torch  # the pipelines that have weights need torch; the node's side does not

    state = torch.load(folder / card.weights_file, map_location="cpu", weights_only=True)
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelStoreError(f"{folder}: the weights do not fit the network: {exc}") from exc
    network.eval()


def write_model_card(folder: str | Path, card: ModelCard) -> Path:
    """Write ``model.json`` durably (temporary file, fsync, rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CARD_FILE
    temporary = folder / f".{CARD_FILE}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(card.to_json(), handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    return target


class ModelFolderCache(Generic[LoadedModel]):
    """The last model loaded from a folder, loaded again when the folder or its checksum
    changes (a new version activated, or the folder's weights replaced).

    ``load`` builds the pipeline's model from a folder; it is called under a lock, so
    one worker thread loads while the others wait for the result.
    """

    def __init__(self, load: Callable[[Path], LoadedModel]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._model: LoadedModel | None = None

    def get(self, folder: Path) -> LoadedModel:
        card = read_model_card(folder, verify=False)
        key = (str(Path(folder).resolve()), card.weights_sha256)
        with self._lock:
            if self._model is None or self._key != key:
                self._model = self._load(Path(folder))
                self._key = key
            return self._model

    def get_active(
        self, folder: Path | None, version: str | None, *, pipeline: str, how_to_get: str
    ) -> LoadedModel:
        """A job's model (its active version's folder), or ModelMissing saying why and
        ``how_to_get`` one: no active version, or a folder that cannot be loaded."""
        if folder is None:
            raise ModelMissing(f"no active {pipeline} model: {how_to_get}")
        try:
            return self.get(folder)
        except (ModelStoreError, OSError) as exc:
            raise ModelMissing(
                f"the {pipeline} model {version} cannot be used ({exc}); {how_to_get}"
            ) from exc
