"""The studies a run learns from: the node's own index, or pulled from the PACS first.

``select_studies`` reads the index (``studies`` / ``series`` / ``instances``): series that
one of the pipeline's routes would send to it (``ingest.route.rule_matches``; every
series when no route names the pipeline, then the filters must say what to take), of the
modalities and body parts asked for, from studies in the date range, newest first, at
most ``max_studies`` studies. Clinical studies and studies retrieved for training are
taken alike. ``retrieve_from_pacs`` asks ``dicom_node.retraining.retrieve`` to pull the studies
matching the filters into the node first (indexed with purpose ``training``); the run
then selects those studies from the index in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from dicom_node.db.models import Instance, Series, Study
from dicom_node.errors import NodeError
from dicom_node.ingest.route import SeriesHeader, rule_matches
from dicom_node.settings import NodeSettings, RetrainingEntry, RouteRule

#: Rows per ``IN (...)`` list: well below SQLite's limit on bound parameters.
CHUNK = 500


class SelectionError(NodeError):
    """The filters cannot select anything sensible, or the PACS source is unavailable."""


@dataclass(frozen=True)
class Filters:
    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    since: str | None = None  # first study date, YYYYMMDD
    until: str | None = None
    max_studies: int | None = None

    @classmethod
    def of(cls, entry: RetrainingEntry) -> Filters:
        return cls(entry.modality, entry.body_part, entry.since, entry.until, entry.max_studies)

    def to_json(self) -> dict[str, Any]:
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}


@dataclass(frozen=True)
class SelectedStudy:
    study_instance_uid: str
    study_date: str | None
    files: tuple[str, ...]  # paths relative to storage_dir


def pipeline_routes(routes: Iterable[RouteRule], pipeline: str) -> tuple[RouteRule, ...]:
    return tuple(rule for rule in routes if pipeline in rule.pipelines)


def check_scope(rules: tuple[RouteRule, ...], pipeline: str, filters: Filters) -> None:
    """Something must say which series are the pipeline's: its routes or the filters."""
    if not rules and not filters.modality and not filters.body_part:
        raise SelectionError(
            f"no route sends series to {pipeline} and no modality or body part is given: "
            "nothing says which series of the archive are its (add a [[routes]] entry, or "
            "modality / body_part to its [[retraining]] entry or --modality / --body-part)"
        )


def select_studies(
    engine: Engine,
    rules: tuple[RouteRule, ...],
    filters: Filters,
    *,
    only: Collection[str] | None = None,
) -> list[SelectedStudy]:
    """The studies to learn from, newest first, each with the files of its chosen series
    (``only``: among these Study Instance UIDs)."""
    query = select(
        Study.study_instance_uid,
        Study.study_date,
        Series.id,
        Series.modality,
        Series.body_part_examined,
        Series.series_description,
        Series.sop_class_uid,
    ).join(Series, Series.study_id == Study.id)
    if filters.modality:
        query = query.where(func.upper(Series.modality).in_([m.upper() for m in filters.modality]))
    if filters.body_part:
        wanted = [b.upper() for b in filters.body_part]
        query = query.where(func.upper(Series.body_part_examined).in_(wanted))
    if filters.since:
        query = query.where(Study.study_date >= filters.since)
    if filters.until:
        query = query.where(Study.study_date <= filters.until)
    if only is not None:
        query = query.where(Study.study_instance_uid.in_(sorted(set(only))))
    query = query.order_by(
        Study.study_date.desc().nulls_last(),
        Study.first_received_at.desc(),
        Study.id.desc(),
        Series.id,
    )
    chosen: dict[str, tuple[str | None, list[int]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            uid, date, series_id = row[0], row[1], row[2]
            header = SeriesHeader(row[3], row[4], row[5], row[6])
            if rules and not any(rule_matches(rule, header) for rule in rules):
                continue
            if uid not in chosen:
                if filters.max_studies is not None and len(chosen) >= filters.max_studies:
                    continue  # a further series of a study already taken may still come
                chosen[uid] = (date, [])
            chosen[uid][1].append(series_id)
        files = _files_of(conn, [s for _, series in chosen.values() for s in series])
    return [
        SelectedStudy(uid, date, tuple(f for s in series for f in files.get(s, ())))
        for uid, (date, series) in chosen.items()
    ]


def _files_of(conn: Any, series_ids: list[int]) -> dict[int, list[str]]:
    files: dict[int, list[str]] = {}
    for start in range(0, len(series_ids), CHUNK):
        query = (
            select(Instance.series_id, Instance.path)
            .where(Instance.series_id.in_(series_ids[start : start + CHUNK]))
            .order_by(Instance.series_id, Instance.instance_number, Instance.id)
        )
        for series_id, path in conn.execute(query):
            files.setdefault(series_id, []).append(path)
    return files


Advance = Callable[[int, int], None]


def retrieve_from_pacs(
    settings: NodeSettings, engine: Engine, filters: Filters, advance: Advance
) -> tuple[list[str], dict[str, Any]]:
    """Pull the studies matching ``filters`` from the PACS into the node; their UIDs and
    what the retrieval reports (counts, failures)."""
    from dicom_node.retraining import retrieve  # the SCU side: only this source needs it

    query = retrieve.PacsQuery(
        modality=filters.modality,
        body_part=filters.body_part,
        study_date_from=filters.since,
        study_date_to=filters.until,
        max_studies=filters.max_studies,
    )
    try:
        report = retrieve.retrieve_for_training(settings, engine, query, progress=advance)
    except retrieve.RetrieveError as exc:  # not configured, PACS down, study query failed
        raise SelectionError(f"source pacs: {exc}") from exc
    details = {
        "studies_found": report.studies_found,
        "studies": len(report.study_instance_uids),
        "instances_retrieved": report.instances_retrieved,
        "instances_already_stored": report.instances_already_stored,
        "failures": len(report.failures),
    }
    return list(report.study_instance_uids), details
