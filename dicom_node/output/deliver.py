"""Deliver output objects to their destinations: C-STORE, retries kept in the database.

A delivery is one (output object, destination) pair. Due deliveries are sent in one
association per destination; each pair that fails is retried on its own with exponential
backoff (first retry after ``first_retry_seconds``, doubling, capped at
``max_retry_seconds``) until ``max_attempts``, then it is ``dead`` until a person replays
it with ``dicom-node deliveries retry``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, Select, select, update
from sqlalchemy.dialects import postgresql, sqlite

from dicom_node.clock import utcnow
from dicom_node.db.engine import write_transaction
from dicom_node.db.models import Delivery, DeliveryState, Output
from dicom_node.errors import NodeError
from dicom_node.net.scu import AssociationFailed, SendReport, inspect_files, send_files
from dicom_node.settings import DeliverySettings, Destination

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DueDelivery:
    id: int
    destination: str
    attempts: int
    path: Path
    sop_instance_uid: str


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)


CLAIM_BATCH = 500  # deliveries taken per round; the rest wait for the next one


def due_deliveries_query(now: datetime) -> Select[int, str, int, str, str]:
    """Pending deliveries due at ``now``, oldest first, locked for the claim
    (PostgreSQL: ``FOR UPDATE OF deliveries SKIP LOCKED``; SQLite: the write lock)."""
    return (
        select(
            Delivery.id,
            Delivery.destination,
            Delivery.attempts,
            Output.path,
            Output.sop_instance_uid,
        )
        .join(Output, Output.id == Delivery.output_id)
        .where(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(CLAIM_BATCH)
        .with_for_update(skip_locked=True, of=Delivery)
    )


class DeliveryNotFound(NodeError):
    pass


def schedule_delivery_in(conn: Connection, output_id: int, destination: str) -> None:
    """Queue (output, destination) for sending now; a rerun's pair is sent again.

    Output UIDs are deterministic, so sending again never duplicates in the PACS.
    """
    now = utcnow()
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(Delivery).values(
        output_id=output_id,
        destination=destination,
        state=DeliveryState.PENDING,
        attempts=0,
        next_attempt_at=now,
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["output_id", "destination"],
            set_={
                "state": DeliveryState.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": None,
                "delivered_at": None,
            },
        )
    )


class Deliverer:
    def __init__(
        self,
        engine: Engine,
        settings: DeliverySettings,
        destinations: tuple[Destination, ...],
        outputs_root: Path,
        calling_ae_title: str,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.destinations = {d.name: d for d in destinations}
        self.outputs_root = outputs_root.resolve()
        self.calling_ae_title = calling_ae_title

    def backoff_seconds(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failed attempt: 30 s, 60 s, 120 s ... capped."""
        delay = self.settings.first_retry_seconds * 2 ** max(attempts - 1, 0)
        return float(min(delay, self.settings.max_retry_seconds))

    @property
    def claim_seconds(self) -> float:
        """How long claimed deliveries stay invisible to other deliverers (a crash
        mid-send makes them due again after this)."""
        return max(60.0, 10 * self.settings.timeout_seconds)

    def claim_due(self, now: datetime | None = None) -> list[DueDelivery]:
        """Take the due deliveries, atomically, so that several ``serve`` processes
        against one database never send the same pair at once.

        Claiming pushes ``next_attempt_at`` past the claim period; recording the outcome
        then sets the real state (and the next attempt, for a failure).
        """
        now = now or utcnow()
        query = due_deliveries_query(now)
        with write_transaction(self.engine) as conn:
            rows = conn.execute(query).all()
            if rows:
                conn.execute(
                    update(Delivery)
                    .where(Delivery.id.in_([r.id for r in rows]))
                    .values(next_attempt_at=now + timedelta(seconds=self.claim_seconds))
                )
        return [
            DueDelivery(
                r.id, r.destination, r.attempts, self.outputs_root / r.path, r.sop_instance_uid
            )
            for r in rows
        ]

    def run_once(self, now: datetime | None = None) -> DeliveryReport:
        """Send every due delivery; record each pair's outcome."""
        report = DeliveryReport()
        by_destination: dict[str, list[DueDelivery]] = defaultdict(list)
        for item in self.claim_due(now):
            by_destination[item.destination].append(item)
        for name, items in by_destination.items():
            outcomes = self._send(name, items)
            for item in items:
                error = outcomes.get(item.id)
                self._record(item, error, report)
        return report

    def _send(self, name: str, items: list[DueDelivery]) -> dict[int, str | None]:
        """Return delivery id → None (sent) or the error text."""
        destination = self.destinations.get(name)
        if destination is None:
            return {i.id: f"destination {name!r} is not configured" for i in items}
        outcome: dict[int, str | None] = {}
        by_path: dict[Path, DueDelivery] = {}
        for item in items:
            if not item.path.is_file():
                outcome[item.id] = f"output file {item.path} is missing"
            else:
                by_path[item.path] = item
        if not by_path:
            return outcome
        report = SendReport()
        files = inspect_files(list(by_path), report)
        for path, why in report.skipped:
            outcome[by_path[path].id] = why
        try:
            send_files(
                files,
                destination.host,
                destination.port,
                calling_aet=self.calling_ae_title,
                called_aet=destination.ae_title,
                report=report,
                timeout=self.settings.timeout_seconds,
            )
        except (AssociationFailed, OSError) as exc:
            for item in by_path.values():
                outcome.setdefault(item.id, f"{name}: {exc}")
        for path, why in report.failed:
            outcome[by_path[path].id] = f"{name}: {why}"
        for path in report.succeeded:
            outcome[by_path[path].id] = None
        for item in by_path.values():
            outcome.setdefault(item.id, f"{name}: not sent (association ended)")
        return outcome

    def _record(self, item: DueDelivery, error: str | None, report: DeliveryReport) -> None:
        now = utcnow()
        attempts = item.attempts + 1
        if error is None:
            values: dict[str, object] = dict(
                state=DeliveryState.SENT, attempts=attempts, delivered_at=now, last_error=None
            )
            report.sent.append(item.id)
            logger.info("delivered %s to %s", item.sop_instance_uid, item.destination)
        elif attempts >= self.settings.max_attempts:
            values = dict(state=DeliveryState.DEAD, attempts=attempts, last_error=error)
            report.dead.append(item.id)
            logger.error(
                "delivery %d of %s to %s is dead after %d attempts: %s",
                item.id,
                item.sop_instance_uid,
                item.destination,
                attempts,
                error,
            )
        else:
            delay = self.backoff_seconds(attempts)
            values = dict(
                attempts=attempts,
                last_error=error,
                next_attempt_at=now + timedelta(seconds=delay),
            )
            report.retrying.append(item.id)
            logger.warning(
                "delivery %d to %s failed (attempt %d), retry in %.0f s: %s",
                item.id,
                item.destination,
                attempts,
                delay,
                error,
            )
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(Delivery)
                .where(Delivery.id == item.id, Delivery.state == DeliveryState.PENDING)
                .values(**values)
            )


def replay_dead(engine: Engine, delivery_ids: list[int] | None = None) -> int:
    """Queue dead deliveries again with fresh attempts: the given ids, or all dead ones.

    Return how many were queued; ``serve`` sends them in its next round.
    """
    statement = (
        update(Delivery)
        .where(Delivery.state == DeliveryState.DEAD)
        .values(state=DeliveryState.PENDING, attempts=0, next_attempt_at=utcnow())
    )
    with write_transaction(engine) as conn:
        if delivery_ids is not None:
            found = set(
                conn.execute(select(Delivery.id).where(Delivery.id.in_(delivery_ids))).scalars()
            )
            missing = sorted(set(delivery_ids) - found)
            if missing:
                raise DeliveryNotFound(f"no delivery {', '.join(map(str, missing))}")
            statement = statement.where(Delivery.id.in_(delivery_ids))
        return int(conn.execute(statement).rowcount)
