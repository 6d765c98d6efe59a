"""Who may associate: the calling-AE allowlist (with hosts) and the association limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.peers import echoscu, wait_until

pytestmark = pytest.mark.timeout(60)

# A-ASSOCIATE-RJ (result, source, reason/diagnostic), PS3.8 9.3.4
REJECTED_PERMANENT, REJECTED_TRANSIENT = 0x01, 0x02
SOURCE_SERVICE_USER, SOURCE_PROVIDER_PRESENTATION = 0x01, 0x03
CALLING_AE_NOT_RECOGNISED, LOCAL_LIMIT_EXCEEDED = 0x03, 0x02


def rejection_triplet(assoc: Association) -> tuple[int, int, int]:
    """(result, source, diagnostic) of the A-ASSOCIATE-RJ the acceptor side holds."""
    primitive = assoc.acceptor.primitive
    assert primitive is not None
    return (
        int(primitive.result or 0),
        int(primitive.result_source or 0),
        int(primitive.diagnostic or 0),
    )


def associate(
    port: int, calling_aet: str, called_aet: str = "DICOM_NODE"
) -> tuple[Association, list[tuple[int, int, int]]]:
    """Request a Verification association; also return any A-ASSOCIATE-RJ received."""
    rejections: list[tuple[int, int, int]] = []

    def on_rejected(event: evt.Event) -> None:
        rejections.append(rejection_triplet(event.assoc))

    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=called_aet, evt_handlers=[(evt.EVT_REJECTED, on_rejected)]
    )
    return assoc, rejections


def rejection(assoc: Association, seen: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    assert not assoc.is_established
    assert assoc.is_rejected
    return seen[0] if seen else rejection_triplet(assoc)


def echo_ok(port: int, calling_aet: str) -> bool:
    assoc, _ = associate(port, calling_aet)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == 0
    finally:
        assoc.release()


# -- allowlist -----------------------------------------------------------------------------


def test_allowlist_accepts_listed_title_and_rejects_others(receiver: Callable[..., Any]) -> None:
    node = receiver(allowed_callers=[{"ae_title": "GOOD"}])

    assert echo_ok(node.port, "GOOD")
    assoc, seen = associate(node.port, "BAD")
    assert rejection(assoc, seen) == (
        REJECTED_PERMANENT,
        SOURCE_SERVICE_USER,
        CALLING_AE_NOT_RECOGNISED,
    )


@pytest.mark.peers
def test_allowlist_with_dcmtk_echoscu(receiver: Callable[..., Any]) -> None:
    node = receiver(allowed_callers=[{"ae_title": "GOOD"}])

    good = echoscu(node.port, aet="GOOD", aec=node.ae_title, timeout=10)
    bad = echoscu(node.port, aet="BAD", aec=node.ae_title, timeout=10)

    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode != 0
    assert "rejected" in (bad.stdout + bad.stderr).lower()


def test_allowlist_title_from_other_host_is_rejected(receiver: Callable[..., Any]) -> None:
    node = receiver(allowed_callers=[{"ae_title": "GOOD", "hosts": ["10.9.9.9"]}])

    assoc, seen = associate(node.port, "GOOD")

    assert rejection(assoc, seen) == (
        REJECTED_PERMANENT,
        SOURCE_SERVICE_USER,
        CALLING_AE_NOT_RECOGNISED,
    )


def test_allowlist_title_from_listed_host_is_accepted(receiver: Callable[..., Any]) -> None:
    node = receiver(
        allowed_callers=[
            {"ae_title": "GOOD", "hosts": ["127.0.0.1"]},
            {"ae_title": "ELSEWHERE", "hosts": ["10.9.9.9"]},
        ]
    )

    assert echo_ok(node.port, "GOOD")
    assoc, seen = associate(node.port, "ELSEWHERE")
    assert rejection(assoc, seen)[2] == CALLING_AE_NOT_RECOGNISED


def test_allowlist_hosts_may_be_networks(receiver: Callable[..., Any]) -> None:
    node = receiver(
        allowed_callers=[
            {"ae_title": "LOOPBACK_NET", "hosts": ["127.0.0.0/8"]},
            {"ae_title": "OTHER_NET", "hosts": ["10.0.0.0/8", "fd00::/8"]},
        ]
    )

    assert echo_ok(node.port, "LOOPBACK_NET")
    assoc, seen = associate(node.port, "OTHER_NET")
    assert rejection(assoc, seen)[2] == CALLING_AE_NOT_RECOGNISED


def test_empty_allowlist_accepts_any_title(receiver: Callable[..., Any]) -> None:
    node = receiver()

    assert echo_ok(node.port, "ANYONE")
    assert echo_ok(node.port, "SOMEONE_ELSE")


# -- association limit ---------------------------------------------------------------------


def test_association_over_the_limit_is_rejected_transiently(
    receiver: Callable[..., Any],
) -> None:
    node = receiver(max_associations=1)

    first, _ = associate(node.port, "FIRST")
    try:
        assert first.is_established
        second, seen = associate(node.port, "SECOND")
        assert rejection(second, seen) == (
            REJECTED_TRANSIENT,
            SOURCE_PROVIDER_PRESENTATION,
            LOCAL_LIMIT_EXCEEDED,
        )
        # The held association still works.
        status = first.send_c_echo()
        assert status and status.Status == 0
    finally:
        first.release()

    # Once the first is gone a new association is accepted again.
    wait_until(
        lambda: not node.receiver.ae.active_associations,
        timeout=10,
        message="the released association is still active on the node",
    )
    assert echo_ok(node.port, "THIRD")


def test_association_timeouts_come_from_the_settings(receiver: Callable[..., Any]) -> None:
    node = receiver(acse_timeout_seconds=3, dimse_timeout_seconds=4, network_timeout_seconds=5)
    ae = node.receiver.ae
    assert (ae.acse_timeout, ae.dimse_timeout, ae.network_timeout) == (3, 4, 5)
