"""uvicorn in a thread of the ``serve`` process, started and stopped with the Node."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import uvicorn
from sqlalchemy import Engine

from dicom_node.http.app import build_app
from dicom_node.ingest.receive import Receiver
from dicom_node.settings import NodeSettings

logger = logging.getLogger(__name__)


class HttpServer:
    """The HTTP side of one node: ``start`` after the receiver started, ``stop`` before
    the engine is disposed."""

    def __init__(self, settings: NodeSettings, engine: Engine, receiver: Receiver) -> None:
        self.settings = settings
        self.engine = engine
        self.receiver = receiver
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the HTTP server is not running")
        return int(self._socket.getsockname()[1])

    def start(self) -> None:
        http = self.settings.http
        app = build_app(self.settings, self.engine, self.receiver)
        family = socket.AF_INET6 if ":" in http.bind_address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((http.bind_address, http.port))  # a busy port fails the start, here
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", server_header=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()
        logger.info("HTTP side on http://%s:%d/", http.bind_address, self.port)

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None
