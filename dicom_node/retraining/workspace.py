"""A run's folder: the selected files linked into a training part and a held-out part.

``<work_root>/run-<id>/train/`` and ``held_out/`` hold symbolic links to the stored files
(``<study>/<series>/<sop>.dcm``, as in the store), so a trainer reads a folder of DICOM
files as it would any other. Which studies are held out depends on the study alone: its
Study Instance UID's SHA-256 falls in the first ``held_out_pct`` % of the range. So a
study held out once is held out in every run with that share, and the active model, if
an earlier run made it, never trained on the films it is now scored on. With the site's
pinned ``evaluation_dir`` nothing is held out: every selected study trains, and both
models are scored on that folder. The links and the candidate's copy go when the run
ends; the logs of its processes stay.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dicom_node.errors import NodeError
from dicom_node.retraining.selection import SelectedStudy
from dicom_node.store import DurableStore

BUCKETS = 10_000
TRAIN, HELD_OUT, CANDIDATE = "train", "held_out", "candidate"


class WorkspaceError(NodeError):
    """The selection cannot be split into data to train on and data to score on."""


def is_held_out(study_instance_uid: str, held_out_pct: float) -> bool:
    """The study's fixed side: its UID's hash in the first ``held_out_pct`` % of buckets."""
    digest = hashlib.sha256(study_instance_uid.encode("ascii", "replace")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS < held_out_pct * BUCKETS / 100


@dataclass(frozen=True)
class Workspace:
    folder: Path
    train_dir: Path
    evaluation_dir: Path
    training_studies: int
    held_out_studies: int  # 0 with a pinned evaluation folder

    @property
    def candidate_dir(self) -> Path:
        return self.folder / CANDIDATE

    def clean(self) -> None:
        """Remove the links and the candidate's copy; the logs stay."""
        for name in (TRAIN, HELD_OUT, CANDIDATE):
            shutil.rmtree(self.folder / name, ignore_errors=True)


def prepare_workspace(
    folder: Path,
    studies: Sequence[SelectedStudy],
    store: DurableStore,
    *,
    held_out_pct: float,
    evaluation_dir: Path | None,
) -> Workspace:
    """Link the studies' files into ``folder/train`` (and ``folder/held_out``)."""
    if not studies:
        raise WorkspaceError("no study of the archive matches the selection")
    if evaluation_dir is not None and not Path(evaluation_dir).is_dir():
        raise WorkspaceError(f"the evaluation folder {evaluation_dir} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    train_dir, held_dir = folder / TRAIN, folder / HELD_OUT
    held = [] if evaluation_dir is not None else [
        s for s in studies if is_held_out(s.study_instance_uid, held_out_pct)
    ]  # fmt: skip
    held_uids = {s.study_instance_uid for s in held}
    train = [s for s in studies if s.study_instance_uid not in held_uids]
    if not train:
        raise WorkspaceError(f"all {len(studies)} selected studies are held out: none to train on")
    if evaluation_dir is None and not held:
        raise WorkspaceError(
            f"none of the {len(studies)} selected studies falls in the held-out "
            f"{held_out_pct:g} %: select more studies, or set evaluation_dir"
        )
    for target, chosen in ((train_dir, train), (held_dir, held)):
        for study in chosen:
            for relative in study.files:
                link = target / relative
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(store.resolve(relative), link)
    return Workspace(
        folder=folder,
        train_dir=train_dir,
        evaluation_dir=Path(evaluation_dir) if evaluation_dir is not None else held_dir,
        training_studies=len(train),
        held_out_studies=len(held),
    )
