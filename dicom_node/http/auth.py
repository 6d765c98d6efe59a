"""Who may see the pages and who may retry: a bearer token, HTTP basic credentials, or a
session cookie given after the token was typed into ``/login`` (browsers without
JavaScript cannot send a header).

Access levels: with no secret configured (loopback only, the settings insist) everyone
reads; ``token_env`` and ``basic_env`` give read access; ``write_token_env`` gives read and
write (the retry buttons). Writes are never open without a write token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from enum import IntEnum

from starlette.requests import Request

from dicom_node.settings import HttpSettings

SESSION_COOKIE = "dicom_node_session"


class Access(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


class Gate:
    """Checks the credentials a request carries against the configured secrets."""

    def __init__(self, http: HttpSettings) -> None:
        self._tokens: dict[str, Access] = {}
        read = http.secret(http.token_env)
        write = http.secret(http.write_token_env)
        if read:
            self._tokens[read] = Access.READ
        if write:
            self._tokens[write] = Access.WRITE
        self._basic = http.secret(http.basic_env)
        self._key = os.urandom(32)  # sessions end when the process does

    @property
    def open(self) -> bool:
        return not self._tokens and self._basic is None

    @property
    def challenge(self) -> str:
        return 'Basic realm="dicom-node"' if self._basic else 'Bearer realm="dicom-node"'

    def _session_value(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def session_for(self, token: str) -> str | None:
        """The cookie value for a typed token, or None for a wrong one."""
        for known in self._tokens:
            if hmac.compare_digest(known.encode(), token.encode()):
                return self._session_value(known)
        return None

    def access(self, request: Request) -> Access:
        if self.open:
            return Access.READ
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            return self._token_access(value.strip())
        if scheme.lower() == "basic" and value and self._basic is not None:
            try:
                given = base64.b64decode(value.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return Access.NONE
            if hmac.compare_digest(given.encode(), self._basic.encode()):
                return Access.READ
            return Access.NONE
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            for token, level in self._tokens.items():
                if hmac.compare_digest(cookie.encode(), self._session_value(token).encode()):
                    return level
        return Access.NONE

    def _token_access(self, given: str) -> Access:
        for token, level in self._tokens.items():
            if hmac.compare_digest(token.encode(), given.encode()):
                return level
        return Access.NONE


def same_origin(request: Request) -> bool:
    """A form POST must come from a page of this server (with SameSite=Strict cookies, a
    second line against cross-site requests): Origin, or else Referer, names our host."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True  # not a browser (curl with a bearer token)
    return origin.split("://", 1)[-1].split("/", 1)[0] == host
