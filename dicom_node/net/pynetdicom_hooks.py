"""The pynetdicom internals the node patches or overrides, checked before they are used.

The receiver's durability rests on pynetdicom internals that are not its public API:

* ``dimse_messages.NamedTemporaryFile``: replaced so that a C-STORE dataset spools into the
  node's own file (on the storage volume, fsynced, size-limited) instead of a temporary
  file of pynetdicom's; if pynetdicom stopped calling it by that name, datasets would
  silently go elsewhere;
* ``_config.STORE_RECV_CHUNKED_DATASET`` / ``STORE_SEND_CHUNKED_DATASET`` /
  ``LOG_REQUEST_IDENTIFIERS``: chunked receive and send, and no patient identifiers in
  pynetdicom's log; setting a name a module no longer has raises nothing;
* ``transport.ThreadedAssociationServer``'s ``get_request`` (pynetdicom's TLS wrap, moved
  into the connection's thread), ``process_request_thread`` and ``service_actions``;
* ``Association._serve_request`` (wrapped by ``dicom_node.ingest.store_requests`` so that
  a C-STORE naming a SOP class with no storage service is refused with 0x0122 instead of
  aborting the association), the ``uid_to_service_class`` it looks up, and the
  association's ``_accepted_cx`` and ``_sent_release``;
* ``AssociationSocket.recv`` (wrapped by ``dicom_node.ingest.pdu_limit`` so that a PDU
  over the receive limit is aborted before its body is read) and its association
  (``_assoc``), called from ``DULServiceProvider._read_pdu_data``;
* ``AE.require_calling_aet`` (a property the allowlist overrides), ``AE._servers`` (where
  ``ae.shutdown()`` finds servers) and ``DULServiceProvider.assoc`` (how the spool file
  finds its association's AE).

``pyproject.toml`` pins pynetdicom to the minor version these were tested with
(``TESTED_MINOR``); ``check_pynetdicom_hooks()`` refuses to start with a message naming
each missing piece, so that an upgrade cannot drop durability without a word.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Iterator

import pynetdicom
from pynetdicom import _config, association, dimse_messages, transport
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

from dicom_node.errors import NodeError

logger = logging.getLogger(__name__)

#: The pynetdicom minor version the hooks were tested with (pyproject pins it).
TESTED_MINOR = "3.0"

_CONFIG_NAMES = (
    "STORE_RECV_CHUNKED_DATASET",
    "STORE_SEND_CHUNKED_DATASET",
    "LOG_REQUEST_IDENTIFIERS",
)
_SERVER_METHODS = ("get_request", "process_request_thread", "service_actions", "shutdown_request")


class PynetdicomHooksMissing(NodeError):
    """The installed pynetdicom lacks an internal the node patches: it must not start."""


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def module_calls_name(module: types.ModuleType, name: str) -> bool:
    """Whether a function or method defined in ``module`` looks ``name`` up as a global
    (so that replacing ``module.name`` reaches the call)."""
    for value in vars(module).values():
        functions = [value]
        if isinstance(value, type) and value.__module__ == module.__name__:
            functions = list(vars(value).values())
        for function in functions:
            code = getattr(function, "__code__", None)
            if isinstance(code, types.CodeType) and any(
                name in item.co_names for item in _code_objects(code)
            ):
                return True
    return False


def missing_hooks(
    *,
    config: types.ModuleType = _config,
    messages: types.ModuleType = dimse_messages,
    server: type = transport.ThreadedAssociationServer,
    ae: type = ApplicationEntity,
    dul: type = DULServiceProvider,
    assoc: type = Association,
    assoc_module: types.ModuleType = association,
    assoc_socket: type = transport.AssociationSocket,
) -> list[str]:
    """What of the patched internals is missing (empty: all there)."""
    missing = [f"pynetdicom._config.{n}" for n in _CONFIG_NAMES if not hasattr(config, n)]
    if not hasattr(messages, "NamedTemporaryFile"):
        missing.append("pynetdicom.dimse_messages.NamedTemporaryFile")
    elif not module_calls_name(messages, "NamedTemporaryFile"):
        missing.append(
            "a call of NamedTemporaryFile in pynetdicom.dimse_messages (chunked C-STORE datasets "
            "would no longer spool into the node's files)"
        )
    missing += [f"{server.__name__}.{n}" for n in _SERVER_METHODS if not hasattr(server, n)]
    get_request = getattr(server, "get_request", None)
    code = getattr(get_request, "__code__", None)
    if code is not None and "wrap_socket" not in code.co_names:
        missing.append(f"the TLS wrap in {server.__name__}.get_request")
    if not isinstance(getattr(ae, "require_calling_aet", None), property):
        missing.append("ApplicationEntity.require_calling_aet (a property)")
    if "_servers" not in ae.__init__.__code__.co_names:  # type: ignore[misc]
        missing.append("ApplicationEntity._servers")
    if not isinstance(getattr(dul, "assoc", None), property):
        missing.append("DULServiceProvider.assoc")
    serve_request = getattr(assoc, "_serve_request", None)
    # The wrapped original once the receiver has wrapped it (functools.wraps).
    serve = getattr(inspect.unwrap(serve_request), "__code__", None) if serve_request else None
    if serve is None:
        missing.append("Association._serve_request")
    elif "uid_to_service_class" not in serve.co_names or not hasattr(
        assoc_module, "uid_to_service_class"
    ):
        missing.append(
            "the uid_to_service_class lookup in Association._serve_request (a C-STORE of an "
            "unsupported SOP class could abort the association again)"
        )
    recv = getattr(assoc_socket, "recv", None)
    read_pdu = getattr(getattr(dul, "_read_pdu_data", None), "__code__", None)
    if recv is None or read_pdu is None or "recv" not in read_pdu.co_names:
        missing.append(
            "AssociationSocket.recv, as DULServiceProvider._read_pdu_data reads a PDU with it "
            "(the receive limit on PDU size would no longer apply)"
        )
    if "_assoc" not in assoc_socket.__init__.__code__.co_names:  # type: ignore[misc]
        missing.append("AssociationSocket._assoc")
    init_names = assoc.__init__.__code__.co_names  # type: ignore[misc]
    missing += [
        f"Association.{n}" for n in ("_accepted_cx", "_sent_release") if n not in init_names
    ]
    return missing


def check_pynetdicom_hooks() -> None:
    """Raise ``PynetdicomHooksMissing`` if a patched internal is gone; warn when the
    installed pynetdicom is not the tested minor version (the hooks are still all there)."""
    version = str(getattr(pynetdicom, "__version__", "unknown"))
    missing = missing_hooks()
    if missing:
        raise PynetdicomHooksMissing(
            f"pynetdicom {version} lacks internals the receiver patches: "
            f"{'; '.join(missing)}. dicom-node is tested with pynetdicom {TESTED_MINOR}.x: "
            f"install it (pip install 'pynetdicom=={TESTED_MINOR}.*')"
        )
    if not version.startswith(f"{TESTED_MINOR}."):
        logger.warning(
            "pynetdicom %s is not the tested %s.x; the patched internals are all present",
            version,
            TESTED_MINOR,
        )
