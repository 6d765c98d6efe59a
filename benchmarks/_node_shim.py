"""Run dicom-node's receiver alone, in this process, until SIGTERM or SIGINT.

    python benchmarks/_node_shim.py CONFIG.toml

A stand-in for ``dicom-node serve --config CONFIG.toml`` while the CLI is being
written: it wires settings, durable store, database (migrated to head) and receiver
the way the CLI will, starts the receiver and blocks. Exit status 0 after a clean stop.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} CONFIG.toml", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )

    from dicom_node.db import migrate
    from dicom_node.db.engine import make_engine
    from dicom_node.receive import Receiver
    from dicom_node.settings import load_settings
    from dicom_node.store import DurableStore

    settings = load_settings(Path(argv[1]))
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    receiver = Receiver(
        settings, DurableStore(settings.storage_dir, min_free_bytes=settings.min_free_bytes), engine
    )

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    receiver.start()
    print(
        f"listening on {settings.bind_address}:{receiver.port} as {settings.ae_title}", flush=True
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        receiver.stop()
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
