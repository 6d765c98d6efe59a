"""The node's one typed settings object.

Built once by the CLI from a TOML file (``--config``) and ``DICOM_NODE_*`` environment
variables (nested fields use ``__``, e.g. ``DICOM_NODE_TLS__CERT``), then passed down.
Nothing else in the package reads configuration on its own.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dicom_node.retraining_settings import RetrainingEntry, check_retraining_entries
from dicom_node.uids import check_uid_root

AE_TITLE_PATTERN = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # no backslash, no control chars


def _check_ae_title(value: str) -> str:
    stripped = value.strip()
    if not stripped or not AE_TITLE_PATTERN.match(value) or len(value) > 16:
        raise ValueError(
            f"{value!r} is not a valid AE title (1-16 printable characters, no backslash)"
        )
    return stripped


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AllowedCaller(_Strict):
    """A calling AE title the receiver accepts, optionally only from given hosts.

    ``hosts`` are IP addresses or networks (``"10.0.0.5"``, ``"10.0.0.0/24"``,
    ``"fd00::/64"``); empty means from anywhere.
    """

    ae_title: str
    hosts: tuple[str, ...] = ()

    _ae = field_validator("ae_title")(_check_ae_title)

    @field_validator("hosts")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for host in value:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"{host!r} is not an IP address or network (host names are not resolved)"
                ) from exc
        return value

    def allows_host(self, address: str | None) -> bool:
        """True when no hosts are listed, or ``address`` is in one of them."""
        if not self.hosts:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(host, strict=False) for host in self.hosts)


class TLSSettings(_Strict):
    """TLS for the receiver. TLS 1.2 or newer with AEAD ciphers only."""

    enabled: bool = False
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = Field(
        default=None, description="CA bundle used to verify client certificates"
    )
    require_client_cert: bool = False

    @model_validator(mode="after")
    def _complete(self) -> TLSSettings:
        if self.enabled:
            missing = [n for n in ("cert", "key") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"tls.enabled needs {' and '.join(missing)}")
            if self.require_client_cert and self.ca is None:
                raise ValueError(
                    "tls.require_client_cert needs tls.ca to verify client certificates"
                )
        return self


class RouteRule(_Strict):
    """Send every series whose header matches to ``pipelines``.

    All conditions that are set must match. String comparisons ignore case; the
    SeriesDescription condition is a regular expression searched in the description.
    """

    name: str
    pipelines: tuple[str, ...]
    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    series_description: str | None = None
    sop_class_uid: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    #: Routing by image (``dicom_node/ingest/route_by_image.py``): a film matching the rest
    #: of the rule whose Body Part Examined is missing, empty or unknown is first classified
    #: by this pipeline (``xray_triage``), then routed by the type it sees; with
    #: ``check_headers`` every film is, and ``when_headers_disagree`` picks which one routes.
    when_headers_unclear: str | None = None
    check_headers: bool = False
    when_headers_disagree: Literal["header", "image"] = "header"

    @field_validator("pipelines")
    @classmethod
    def _some_pipeline(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a route needs at least one pipeline")
        return value

    @field_validator("series_description")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(
                    f"series_description is not a valid regular expression: {exc}"
                ) from exc
        return value


class Destination(_Strict):
    """A DICOM peer that receives results."""

    name: str
    host: str
    port: int = Field(ge=1, le=65535)
    ae_title: str

    _ae = field_validator("ae_title")(_check_ae_title)


class QueueSettings(_Strict):
    lease_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    retry_backoff_seconds: float = Field(default=30.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=600.0, ge=0)
    poll_seconds: float = Field(default=1.0, gt=0)


class DeliverySettings(_Strict):
    """C-STORE of results to the destinations: retries with exponential backoff, then dead."""

    max_attempts: int = Field(default=8, ge=1)
    first_retry_seconds: float = Field(default=30.0, ge=0)
    max_retry_seconds: float = Field(default=600.0, ge=0)
    check_seconds: float = Field(default=2.0, gt=0, description="how often due deliveries are sent")
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="network timeout per association"
    )


class OutputSettings(_Strict):
    """How results are written as DICOM objects."""

    uid_root: str = Field(
        default="2.25.",
        description="organisation root for output UIDs ('2.25.': UUID-derived UIDs, no root needed)",
    )
    manufacturer: str = "dicom-node"
    institution_name: str | None = None

    @field_validator("uid_root")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.endswith("."):
            raise ValueError(
                f"{value!r} is not a UID root ending in '.', e.g. '1.2.826.0.1.3680043.10.999.'"
            )
        check_uid_root(value)  # the digits and dots; InvalidUID is a ValueError
        if len(value) > 40:
            raise ValueError(
                "uid_root is longer than 40 characters: derived UIDs would not fit in 64"
            )
        return value


class RetrievalSettings(_Strict):
    """The PACS that training data is pulled from (``dicom_node/retraining/retrieve.py``): queried
    with C-FIND, retrieved with C-MOVE to the node's own receiver or with C-GET."""

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    ae_title: str = Field(description="the PACS's AE title (the called AE)")
    method: Literal["move", "get"] = Field(
        default="move",
        description="move: the PACS sends to move_destination (the node's receiver must run); "
        "get: the instances come back on the node's own association",
    )
    move_destination: str | None = Field(
        default=None, description="the AE title the PACS knows the node by; default ae_title"
    )
    timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="network timeout per association, and how long moved instances may take "
        "to be indexed",
    )
    max_studies: int = Field(default=100, ge=1, description="studies per call unless it says")

    _ae = field_validator("ae_title")(_check_ae_title)

    @field_validator("move_destination")
    @classmethod
    def _destination(cls, value: str | None) -> str | None:
        return None if value is None else _check_ae_title(value)


class HttpSettings(_Strict):
    """``[http]`` (``dicom_node/http``). The ``*_env`` fields name environment variables (a
    token; ``user:password``); a non-loopback ``bind_address`` needs one of them."""

    enabled: bool = False
    bind_address: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token_env: str | None = None  # read access
    write_token_env: str | None = None  # read access and the retry buttons
    basic_env: str | None = None  # read access
    show_patient_identifiers: bool = False

    def secret(self, name: str | None) -> str | None:
        return os.environ.get(name) or None if name else None

    @model_validator(mode="after")
    def _guarded(self) -> HttpSettings:
        named = [n for n in (self.token_env, self.write_token_env, self.basic_env) if n]
        if unset := [n for n in named if self.enabled and self.secret(n) is None]:
            raise ValueError(f"http: environment variable(s) {', '.join(unset)} not set")
        if self.enabled and self.basic_env and ":" not in (self.secret(self.basic_env) or ""):
            raise ValueError(f"http.basic_env: {self.basic_env} must hold user:password")
        host = "127.0.0.1" if self.bind_address == "localhost" else self.bind_address
        if self.enabled and not named and not ipaddress.ip_address(host).is_loopback:
            msg = "is not a loopback address: set token_env, write_token_env or basic_env"
            raise ValueError(f"http.bind_address {self.bind_address} {msg}")
        return self


DuplicatePolicy = Literal["keep_first", "overwrite"]


class NodeSettings(BaseSettings):
    """Everything the node can be told. See ``deploy/dicom-node.example.toml``."""

    model_config = SettingsConfigDict(
        env_prefix="DICOM_NODE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    ae_title: str = "DICOM_NODE"
    bind_address: str = "0.0.0.0"
    port: int = Field(default=11112, ge=0, le=65535)
    storage_dir: Path = Path("var/storage")
    database_url: str = "sqlite:///var/dicom-node.sqlite"
    model_dir: Path = Path("var/models")
    outputs_dir: Path = Field(
        default=Path("var/outputs"),
        description="where SR/SC results are written; default: 'outputs' beside storage_dir",
    )
    outbox_dir: Path | None = Field(
        default=None, description="also copy every output object into this folder"
    )

    allowed_callers: tuple[AllowedCaller, ...] = Field(
        default=(), description="empty: accept every calling AE title"
    )
    tls: TLSSettings = TLSSettings()
    max_associations: int = Field(default=10, ge=1)  # for the node: all receiver processes
    receiver_processes: Annotated[int, Field(ge=1)] | Literal["auto"] = 1  # README: when > 1
    max_dataset_bytes: int = Field(default=2 * 1024**3, gt=0)
    min_free_bytes: int = Field(
        default=256 * 1024**2, ge=0, description="refuse stores (0xA700) below this free space"
    )
    max_pdu_bytes: int = Field(default=4 * 1024**2, ge=0)
    acse_timeout_seconds: float = Field(
        default=30.0, gt=0, description="association negotiation and TLS handshake"
    )
    association_request_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="a new connection must send its whole A-ASSOCIATE-RQ within this, or is closed",
    )
    max_connections_per_peer: int = Field(
        default=32, ge=1, description="connections one peer address may hold, waiting or associated"
    )
    dimse_timeout_seconds: float = Field(default=60.0, gt=0, description="waiting for a message")
    network_timeout_seconds: float = Field(
        default=60.0, gt=0, description="an idle association is closed after this"
    )
    duplicate_policy: DuplicatePolicy = "keep_first"

    stable_after_seconds: float = Field(default=60.0, gt=0)
    stable_check_seconds: float = Field(default=5.0, gt=0)

    routes: tuple[RouteRule, ...] = ()
    destinations: tuple[Destination, ...] = ()
    queue: QueueSettings = QueueSettings()
    delivery: DeliverySettings = DeliverySettings()
    output: OutputSettings = OutputSettings()
    retrieval: RetrievalSettings | None = Field(
        default=None, description="[retrieval]: the PACS that training data is pulled from"
    )
    workers: int = Field(default=1, ge=0, description="worker processes `serve` starts")
    worker_keep_freed_mb: int = Field(
        default=256,
        ge=0,
        description="freed heap (MB) a worker keeps for the next film instead of mapping it "
        "afresh (glibc); 0: malloc's defaults",
    )
    extra_pipelines: dict[str, str] = Field(
        default_factory=dict, description='site pipelines: name = "package.module:attribute"'
    )
    pipeline_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="keyword arguments for a pipeline, e.g. [pipeline_options.hand_orientation]",
    )

    http: HttpSettings = HttpSettings()
    retraining: tuple[RetrainingEntry, ...] = Field(
        default=(), description="[[retraining]]: how and when each pipeline's model is retrained"
    )

    _ae = field_validator("ae_title")(_check_ae_title)

    @model_validator(mode="before")
    @classmethod
    def _outputs_beside_storage(cls, data: Any) -> Any:
        if isinstance(data, dict) and "outputs_dir" not in data and "storage_dir" in data:
            data = {**data, "outputs_dir": Path(str(data["storage_dir"])).parent / "outputs"}
        return data

    @model_validator(mode="after")
    def _routes_name_known_destinations(self) -> NodeSettings:
        known = {d.name for d in self.destinations}
        for route in self.routes:
            unknown = [d for d in route.destinations if d not in known]
            if unknown:
                raise ValueError(
                    f"route {route.name!r} names unknown destination(s) {', '.join(unknown)}"
                )
        return self

    @model_validator(mode="after")
    def _options_name_known_pipelines(self) -> NodeSettings:
        from pipelines.registry import BUILTIN_PIPELINES

        known = set(BUILTIN_PIPELINES) | set(self.extra_pipelines)
        unknown = sorted(set(self.pipeline_options) - known)
        if unknown:
            raise ValueError(
                f"pipeline_options for unknown pipeline(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return self

    @model_validator(mode="after")
    def _retraining_entries(self) -> NodeSettings:
        check_retraining_entries(self.retraining, has_retrieval=self.retrieval is not None)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables override the file, which is passed as init values.
        return env_settings, init_settings


class SettingsError(Exception):
    """A configuration file that cannot be used, with one line per problem."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


def _format_validation_error(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"{where}: {item['msg']}")
    return lines


def load_settings(path: Path | None = None, **overrides: Any) -> NodeSettings:
    """Read ``path`` (TOML) if given, apply environment variables, validate.

    Relative paths in the file are resolved against the file's folder, so a config
    works from any working directory.
    """
    data: dict[str, Any] = {}
    source = "settings"
    if path is not None:
        source = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SettingsError(source, [f"cannot read: {exc.strerror or exc}"]) from exc
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(source, [f"not valid TOML: {exc}"]) from exc
        base = path.resolve().parent
        for key in ("storage_dir", "model_dir", "outputs_dir", "outbox_dir"):
            if key in data and isinstance(data[key], str) and not Path(data[key]).is_absolute():
                data[key] = str(base / data[key])
        for entry in data.get("retraining", ()):
            for key in ("labels_file", "evaluation_dir"):
                value = entry.get(key) if isinstance(entry, dict) else None
                if isinstance(value, str) and not Path(value).is_absolute():
                    entry[key] = str(base / value)
        url = data.get("database_url")
        if (
            isinstance(url, str)
            and url.startswith("sqlite:///")
            and not url.startswith("sqlite:////")
        ):
            relative = url.removeprefix("sqlite:///")
            if relative and relative != ":memory:":
                data["database_url"] = f"sqlite:///{base / relative}"
    data.update(overrides)
    try:
        return NodeSettings(**data)
    except ValidationError as exc:
        raise SettingsError(source, _format_validation_error(exc)) from exc
