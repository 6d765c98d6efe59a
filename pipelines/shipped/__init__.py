"""Models shipped with the project: ``pipelines/shipped/<pipeline>/<version>/``.

Each folder is an ordinary model folder (``pipelines.model_store``: ``model.json`` with
the SHA-256 of ``weights.pt``, the evaluation beside it) whose card also says how it was
made (``training_data["reproduce"]``: the command, seed, machine and wall time), so that
anyone can train it again. ``dicom-node models import`` takes them as any other folder;
``dicom-node demo`` imports and activates them when its store has none.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.model_store import CARD_FILE

SHIPPED_DIR = Path(__file__).resolve().parent


def shipped_models() -> dict[str, Path]:
    """pipeline → the folder of its shipped model (the newest version where there are
    several), for every pipeline that has one."""
    found: dict[str, Path] = {}
    for card in sorted(SHIPPED_DIR.glob(f"*/*/{CARD_FILE}")):
        folder = card.parent
        found[folder.parent.name] = folder  # sorted: the last version wins
    return found


def shipped_model(pipeline: str) -> Path | None:
    """The folder of ``pipeline``'s shipped model, or None when none is shipped."""
    return shipped_models().get(pipeline)
