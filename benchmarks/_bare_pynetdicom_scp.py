"""A bare pynetdicom Storage SCP: the baseline that says what pynetdicom itself costs.

    python benchmarks/_bare_pynetdicom_scp.py PORT FOLDER [--max-pdu N] [--ae-title AET]

Listens on 127.0.0.1:PORT and accepts every storage SOP class with every transfer
syntax pydicom knows (``pydicom.uid.AllTransferSyntaxes``). Datasets are received in
chunks to a temporary file (``_config.STORE_RECV_CHUNKED_DATASET``), the way dicom-node
receives them; the C-STORE handler only moves that file into FOLDER as
``SOPINSTANCEUID.dcm`` with ``os.replace`` (no parsing, no fsync, no database) and
answers Success. TCP_NODELAY is set on every accepted socket, and the maximum PDU
defaults to dicom-node's (4 MiB).

The temporary files are written to ``FOLDER.spool`` beside FOLDER, so that the move is
a rename on one filesystem and FOLDER holds only complete arrivals (one file each).
Runs until SIGTERM or SIGINT; exit status 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import cast

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.dimse_primitives import C_STORE

DEFAULT_MAX_PDU = 4 * 1024**2  # dicom-node's default max_pdu_bytes


def set_tcp_nodelay(event: evt.Event) -> None:
    """EVT_CONN_OPEN: disable Nagle on the accepted socket."""
    event.assoc.dul.socket.socket.setsockopt(  # type: ignore[union-attr]
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )


def make_store_handler(folder: Path) -> Callable[[evt.Event], int]:
    def handle_store(event: evt.Event) -> int:
        source = event.dataset_path
        uid = cast(C_STORE, event.request).AffectedSOPInstanceUID
        name = f"{uid}.dcm" if uid and uid.is_valid else source.name
        os.replace(source, folder / name)
        return 0x0000

    return handle_store


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("folder", type=Path)
    parser.add_argument(
        "--max-pdu", type=int, default=DEFAULT_MAX_PDU, help="maximum PDU received (bytes)"
    )
    parser.add_argument("--ae-title", default="BARE_PYNETDICOM")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder: Path = args.folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    spool = folder.with_name(folder.name + ".spool")
    spool.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(spool)  # pynetdicom's NamedTemporaryFile lands here

    _config.STORE_RECV_CHUNKED_DATASET = True
    ae = AE(ae_title=args.ae_title)
    ae.maximum_pdu_size = args.max_pdu
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, AllTransferSyntaxes)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = ae.start_server(
        ("127.0.0.1", args.port),
        block=False,
        evt_handlers=[
            (evt.EVT_CONN_OPEN, set_tcp_nodelay),
            (evt.EVT_C_STORE, make_store_handler(folder)),
        ],
    )
    assert server is not None  # None only with block=True
    print(f"listening on 127.0.0.1:{args.port} as {args.ae_title}; storing to {folder}", flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
