"""The model store's database side: which model folders exist and which one is active.

A model folder (``pipelines.model_store``) is imported into ``model_dir/PIPELINE/VERSION``
and gets a row in ``model_versions`` with its checksum and metrics. One version per
pipeline is active. Jobs are keyed by the version active when their study became stable;
the worker loads the folder of that version, so activating another version changes what
new jobs run without restarting anything (see ``resolve_model``).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from dicom_node.db.engine import write_transaction
from dicom_node.db.models import ModelVersion
from dicom_node.errors import NodeError
from dicom_node.store import fsync_dir
from pipelines.model_store import (
    NO_MODEL_VERSION,
    ModelCard,
    ModelStoreError,
    read_model_card,
)

logger = logging.getLogger(__name__)

NO_MODEL = NO_MODEL_VERSION  # model_version of jobs for pipelines with no registered model

MODEL_FIELDS = (
    "pipeline",
    "version",
    "active",
    "created_at",
    "sha256",
    "path",
    "metrics",
)


class ModelRegistryError(NodeError):
    """A model cannot be imported or activated."""


@dataclass(frozen=True)
class ResolvedModel:
    version: str
    folder: Path


def active_model_version(conn: Connection, pipeline: str) -> str:
    """The active version of ``pipeline``, or ``NO_MODEL``."""
    version = conn.scalar(
        select(ModelVersion.version).where(
            ModelVersion.pipeline == pipeline, ModelVersion.active.is_(True)
        )
    )
    return version or NO_MODEL


def import_model(
    engine: Engine, source: Path, model_dir: Path, *, activate: bool = False
) -> ModelCard:
    """Check the folder ``source``, copy it into the store, register it (and activate it).

    A folder already in its place in the store is registered where it is. Importing the
    same version with the same weights again is harmless; the same version with other
    weights is refused, so a version name always means one set of weights.
    """
    try:
        card = read_model_card(source)
    except ModelStoreError as exc:
        raise ModelRegistryError(str(exc)) from exc
    target = model_dir / card.pipeline / card.version
    with engine.connect() as conn:  # before copying: a refused folder must not stay behind
        registered = conn.scalar(
            select(ModelVersion.sha256).where(
                ModelVersion.pipeline == card.pipeline, ModelVersion.version == card.version
            )
        )
    if registered is not None and registered != card.weights_sha256:
        raise _other_weights(card, registered)
    if source.resolve() != target.resolve():
        if target.exists():
            existing = _card_or_none(target)
            if existing is None or existing.weights_sha256 != card.weights_sha256:
                raise ModelRegistryError(
                    f"{target} already holds another {card.pipeline} {card.version}; "
                    "give the new model another version"
                )
        else:
            _copy_durably(source, target)
    with write_transaction(engine) as conn:
        row = conn.execute(
            select(ModelVersion.id, ModelVersion.sha256).where(
                ModelVersion.pipeline == card.pipeline, ModelVersion.version == card.version
            )
        ).first()
        if row is not None and row.sha256 != card.weights_sha256:
            raise _other_weights(card, row.sha256)
        if row is None:
            conn.execute(
                insert(ModelVersion).values(
                    pipeline=card.pipeline,
                    version=card.version,
                    path=_stored_path(target, model_dir),
                    sha256=card.weights_sha256,
                    created_at=card.created,
                    active=False,
                    metrics=dict(card.metrics),
                )
            )
        if activate:
            _activate_in(conn, card.pipeline, card.version)
    logger.info("model %s %s registered%s", card.pipeline, card.version, " and active" * activate)
    return card


def activate_model(engine: Engine, pipeline: str, version: str) -> None:
    """Make ``version`` the active model of ``pipeline`` (and no other)."""
    with write_transaction(engine) as conn:
        _activate_in(conn, pipeline, version)
    logger.info("model %s %s active", pipeline, version)


def _activate_in(conn: Connection, pipeline: str, version: str) -> None:
    known = conn.scalar(
        select(ModelVersion.id).where(
            ModelVersion.pipeline == pipeline, ModelVersion.version == version
        )
    )
    if known is None:
        versions = conn.execute(
            select(ModelVersion.version).where(ModelVersion.pipeline == pipeline)
        ).scalars()
        listed = ", ".join(versions) or "none registered; `dicom-node models import FOLDER`"
        raise ModelRegistryError(f"no {pipeline} model version {version!r} (known: {listed})")
    conn.execute(
        update(ModelVersion)
        .where(ModelVersion.pipeline == pipeline)
        .values(active=ModelVersion.id == known)
    )


def list_models(engine: Engine, pipeline: str | None = None) -> list[dict[str, Any]]:
    query = select(
        ModelVersion.pipeline,
        ModelVersion.version,
        ModelVersion.active,
        ModelVersion.created_at,
        ModelVersion.sha256,
        ModelVersion.path,
        ModelVersion.metrics,
    ).order_by(ModelVersion.pipeline, ModelVersion.created_at, ModelVersion.version)
    if pipeline is not None:
        query = query.where(ModelVersion.pipeline == pipeline)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def resolve_model(
    conn: Connection, pipeline: str, version: str, model_dir: Path
) -> ResolvedModel | None:
    """The folder a job runs with: its own version if registered, else the active one.

    A job queued while its pipeline had no model (``NO_MODEL``) runs with whatever is
    active when it runs, so importing a model and retrying the job is enough.
    """
    query = select(ModelVersion.version, ModelVersion.path).where(ModelVersion.pipeline == pipeline)
    row = conn.execute(query.where(ModelVersion.version == version)).first()
    if row is None:
        row = conn.execute(query.where(ModelVersion.active.is_(True))).first()
    if row is None:
        return None
    path = Path(row.path)
    return ResolvedModel(row.version, path if path.is_absolute() else model_dir / path)


def _other_weights(card: ModelCard, registered_sha256: str) -> ModelRegistryError:
    return ModelRegistryError(
        f"{card.pipeline} {card.version} is registered with other weights "
        f"(sha256 {registered_sha256[:12]}…); give the new model another version"
    )


def _card_or_none(folder: Path) -> ModelCard | None:
    try:
        return read_model_card(folder)
    except ModelStoreError:
        return None


def _stored_path(target: Path, model_dir: Path) -> str:
    """Relative to ``model_dir`` (so the store can move with its settings) when inside it."""
    try:
        return str(target.resolve().relative_to(model_dir.resolve()))
    except ValueError:
        return str(target.resolve())


def _copy_durably(source: Path, target: Path) -> None:
    """Copy the folder beside its final place, fsync the files, then rename it in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        shutil.copytree(source, staging)
        for path in staging.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        staging.rename(target)
        fsync_dir(target.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
