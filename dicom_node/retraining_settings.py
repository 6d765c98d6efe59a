"""The ``[[retraining]]`` entries of the node's settings (``settings.NodeSettings.retraining``).

Kept beside ``settings`` (which imports them) so that each stays short; like it, this module
imports nothing of the node's stages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RetrainingSource = Literal["archive", "pacs"]
_STUDY_DATE = re.compile(r"^\d{8}$")
#: Flags of ``dicom-node train`` that a retraining run sets itself.
RESERVED_TRAIN_FLAGS = frozenset(
    {"data", "labels", "calibration", "archive", "synthetic", "out", "version", "threads"}
    | {"no_register", "register", "activate", "preset", "config", "log_level"}
)


def check_study_date(value: str | None) -> str | None:
    """A study date as DICOM writes it, ``YYYYMMDD``, that is a real day."""
    if value is None:
        return None
    try:
        if not _STUDY_DATE.match(value):
            raise ValueError
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise ValueError(f"{value!r} is not a study date YYYYMMDD") from None
    return value


def check_cron(value: str) -> str:
    """Five crontab fields (minute hour day month day-of-week), days of the week by name."""
    fields = value.split()
    if len(fields) == 5 and re.search(r"\d", fields[4]):
        raise ValueError(
            f"cron {value!r}: write the day of the week by name (mon-fri, sat, sun): numbers "
            "mean other days in APScheduler (0 = Monday) than in crontab (0 = Sunday)"
        )
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        raise ValueError(
            f"cron {value!r} is not a crontab expression (minute hour day month "
            f"day-of-week, UTC): {exc}"
        ) from None
    return value


class RetrainingEntry(BaseModel):
    """A ``[[retraining]]`` entry: how ``pipeline``'s model is retrained, and when.

    The data: studies of the node's archive (``source = "archive"``) or pulled from the
    PACS first (``"pacs"``, needs ``[retrieval]``), limited to the series the pipeline's
    routes take and to these filters, newest first. ``cron`` (UTC; None: only by hand,
    ``dicom-node retrain run``) starts a run in ``serve``. Training runs in its own
    process at ``nice`` with ``threads`` CPU threads. The gate activates the candidate
    when it is at most ``margin`` (in the metric's unit) worse than the active model on
    the same held-out films and passes the pipeline's sanity checks.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: str
    source: RetrainingSource = "archive"
    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    since: str | None = Field(default=None, description="first study date, YYYYMMDD")
    until: str | None = Field(default=None, description="last study date, YYYYMMDD")
    max_studies: int | None = Field(default=None, ge=1, description="newest first")
    preset: str | None = Field(default=None, description="the trainer's preset")
    train_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="more flags of `dicom-node train PIPELINE`, e.g. { epochs = 20 }",
    )
    trainer_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="the trainer's retraining options, e.g. { max_tilt_deg = 20 }",
    )
    labels_file: Path | None = Field(
        default=None,
        description="ct_body_part: the calibration CSV; mura_abnormality: the labels CSV",
    )
    cron: str | None = Field(default=None, description="crontab, UTC; None: by hand only")
    threads: int = Field(default=1, ge=1, description="CPU threads of the training process")
    nice: int = Field(default=10, ge=0, le=19, description="niceness of the training process")
    margin: float = Field(default=0.0, ge=0, description="how much worse the candidate may be")
    auto_activate: bool = True
    evaluation_dir: Path | None = Field(
        default=None,
        description="the site's pinned held-out films; None: a held-out share of the data",
    )
    held_out_pct: float = Field(default=20.0, gt=0, lt=100)

    _dates = field_validator("since", "until")(check_study_date)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("train_options")
    @classmethod
    def _flags(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(name for name in value if name.replace("-", "_") in RESERVED_TRAIN_FLAGS)
        if taken:
            raise ValueError(f"train_options {', '.join(taken)}: a retraining run sets them")
        return value

    @model_validator(mode="after")
    def _date_order(self) -> RetrainingEntry:
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"since {self.since} is after until {self.until}")
        return self


def check_retraining_entries(entries: Iterable[RetrainingEntry], *, has_retrieval: bool) -> None:
    """Each entry names a trainer, once; ``source = "pacs"`` needs ``[retrieval]``."""
    from dicom_node.trainers import BUILTIN_TRAINERS

    seen: set[str] = set()
    for entry in entries:
        if entry.pipeline not in BUILTIN_TRAINERS:
            raise ValueError(
                f"[[retraining]] for {entry.pipeline!r}: no trainer of that name "
                f"(known: {', '.join(BUILTIN_TRAINERS)})"
            )
        if entry.pipeline in seen:
            raise ValueError(f"[[retraining]]: {entry.pipeline!r} has more than one entry")
        seen.add(entry.pipeline)
        if entry.source == "pacs" and not has_retrieval:
            raise ValueError(
                f"[[retraining]] for {entry.pipeline!r}: source pacs needs [retrieval]"
            )
