"""Settings: TOML file, DICOM_NODE_* environment, precise problems, `config check`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from rich.console import Console

from dicom_node import cli
from dicom_node.cli import term
from dicom_node.settings import (
    AllowedCaller,
    NodeSettings,
    QueueSettings,
    SettingsError,
    load_settings,
)

VALID = """
ae_title = "NODE_A"
port = 104
storage_dir = "store"
model_dir = "../models"
database_url = "sqlite:///db/node.sqlite"

[tls]
cert = "certs/node.pem"
key = "/etc/dicom-node/node.key"

[queue]
max_attempts = 4

[[allowed_callers]]
ae_title = "PACS"
hosts = ["10.0.0.1"]

[[destinations]]
name = "pacs"
host = "pacs.example.org"
port = 11112
ae_title = "PACS"

[[routes]]
name = "ct"
modality = ["CT"]
series_description = "(?i)ax(ial)?"
pipelines = ["ct_body_part"]
destinations = ["pacs"]
"""


def write_config(folder: Path, text: str, name: str = "node.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(write_config(tmp_path, text))
    return info.value.problems


def one_problem(tmp_path: Path, text: str) -> str:
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    return problems[0]


# -- loading ---------------------------------------------------------------------------------


def test_defaults_without_a_file() -> None:
    settings = load_settings()
    assert settings.ae_title == "DICOM_NODE"
    assert settings.port == 11112
    assert settings.duplicate_policy == "keep_first"
    assert settings.queue == QueueSettings()
    assert settings.tls.enabled is False
    assert settings.routes == ()


def test_file_values_are_read(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "cfg", VALID))
    assert settings.ae_title == "NODE_A"
    assert settings.port == 104
    assert settings.queue.max_attempts == 4
    assert settings.queue.lease_seconds == QueueSettings().lease_seconds
    assert settings.allowed_callers[0].ae_title == "PACS"
    assert settings.allowed_callers[0].hosts == ("10.0.0.1",)
    (route,) = settings.routes
    assert route.modality == ("CT",)
    assert route.pipelines == ("ct_body_part",)
    assert route.destinations == ("pacs",)


def test_relative_paths_resolve_against_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "node"
    path = write_config(folder, VALID)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    settings = load_settings(Path("../../etc/node") / path.name)

    assert settings.storage_dir == folder.resolve() / "store"
    assert settings.model_dir.resolve() == (tmp_path / "etc" / "models").resolve()
    assert settings.database_url == f"sqlite:///{folder.resolve() / 'db' / 'node.sqlite'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/dicom-node/node.sqlite",
        "sqlite:///:memory:",
        "postgresql+psycopg://node@db.example.org/node",
    ],
)
def test_absolute_memory_and_server_urls_are_kept(tmp_path: Path, url: str) -> None:
    settings = load_settings(write_config(tmp_path, f'database_url = "{url}"\n'))
    assert settings.database_url == url


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    settings = load_settings(
        write_config(tmp_path / "cfg", 'storage_dir = "/srv/dicom"\nmodel_dir = "/srv/models"\n')
    )
    assert settings.storage_dir == Path("/srv/dicom")
    assert settings.model_dir == Path("/srv/models")


def test_keyword_overrides_beat_the_file(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, VALID), port=4000)
    assert settings.port == 4000


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, VALID))
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


# -- environment ---------------------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOM_NODE_PORT", "4242")
    monkeypatch.setenv("DICOM_NODE_AE_TITLE", "FROM_ENV")
    settings = load_settings(write_config(tmp_path, VALID))
    assert settings.port == 4242
    assert settings.ae_title == "FROM_ENV"
    assert settings.routes[0].name == "ct"  # the rest of the file still applies


def test_nested_environment_merges_with_the_files_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOM_NODE_TLS__ENABLED", "true")
    monkeypatch.setenv("DICOM_NODE_QUEUE__LEASE_SECONDS", "12.5")
    settings = load_settings(write_config(tmp_path, VALID))
    assert settings.tls.enabled is True
    assert settings.tls.cert == Path("certs/node.pem")  # from the file, not lost
    assert settings.tls.key == Path("/etc/dicom-node/node.key")
    assert settings.queue.lease_seconds == 12.5
    assert settings.queue.max_attempts == 4  # from the file


def test_environment_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOM_NODE_STABLE_AFTER_SECONDS", "1.5")
    assert load_settings().stable_after_seconds == 1.5


def test_environment_can_make_the_settings_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOM_NODE_TLS__ENABLED", "1")
    problem = one_problem(tmp_path, 'ae_title = "NODE"\n')
    assert problem.startswith("tls:")
    assert "tls.enabled needs cert and key" in problem


def test_invalid_environment_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOM_NODE_PORT", "70000")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.source == "settings"
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("port:")


# -- problems --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "title",
    ["BAD\\\\AE", "SEVENTEEN_CHARS_X", "   ", "", "TAB\\tAE"],
    ids=["backslash", "too-long", "spaces", "empty", "control"],
)
def test_bad_ae_title(tmp_path: Path, title: str) -> None:
    problem = one_problem(tmp_path, f'ae_title = "{title}"\n')
    assert problem.startswith("ae_title:")
    assert "is not a valid AE title" in problem


def test_ae_title_padding_is_stripped(tmp_path: Path) -> None:
    assert load_settings(write_config(tmp_path, 'ae_title = " NODE  "\n')).ae_title == "NODE"


def test_bad_ae_title_in_a_nested_list_names_its_place(tmp_path: Path) -> None:
    text = '[[allowed_callers]]\nae_title = "OK"\n[[allowed_callers]]\nae_title = "NOT\\\\OK"\n'
    problem = one_problem(tmp_path, text)
    assert problem.startswith("allowed_callers.1.ae_title:")


def test_unknown_key(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "colour = 1\n")
    assert problem == "colour: Extra inputs are not permitted"


def test_unknown_nested_key(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "[queue]\nlease = 3\n")
    assert problem == "queue.lease: Extra inputs are not permitted"


def test_route_with_unknown_destination(tmp_path: Path) -> None:
    text = VALID.replace('destinations = ["pacs"]', 'destinations = ["pacs", "nowhere"]')
    problem = one_problem(tmp_path, text)
    assert "route 'ct' names unknown destination(s) nowhere" in problem


def test_route_with_bad_regex(tmp_path: Path) -> None:
    text = VALID.replace('series_description = "(?i)ax(ial)?"', 'series_description = "ax(ial"')
    problem = one_problem(tmp_path, text)
    assert problem.startswith("routes.0.series_description:")
    assert "not a valid regular expression" in problem


def test_route_without_pipelines(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, '[[routes]]\nname = "r"\npipelines = []\n')
    assert problem.startswith("routes.0.pipelines:")
    assert "at least one pipeline" in problem


def test_tls_enabled_without_cert(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, '[tls]\nenabled = true\nkey = "k.pem"\n')
    assert problem.startswith("tls:")
    assert problem.endswith("tls.enabled needs cert")


def test_tls_client_certs_need_a_ca(tmp_path: Path) -> None:
    text = '[tls]\nenabled = true\ncert = "c"\nkey = "k"\nrequire_client_cert = true\n'
    assert "needs tls.ca" in one_problem(tmp_path, text)


def test_tls_disabled_needs_nothing(tmp_path: Path) -> None:
    assert load_settings(write_config(tmp_path, "[tls]\nenabled = false\n")).tls.cert is None


def test_every_problem_is_listed(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, 'ae_title = "A\\\\B"\nport = -1\nshape = "round"\n')
    assert len(problems) == 3
    assert sorted(p.split(":")[0] for p in problems) == ["ae_title", "port", "shape"]


def test_error_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "port = -1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: port:")


def test_not_toml(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "port = = 3\n")
    assert problem.startswith("not valid TOML")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path / "absent.toml")
    assert info.value.problems[0].startswith("cannot read")


def test_node_settings_forbid_extras_directly() -> None:
    with pytest.raises(ValidationError):
        NodeSettings(unknown=1)  # type: ignore[call-arg]


# -- `dicom-node config check` ---------------------------------------------------------


@pytest.fixture
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's consoles, writing to the captured streams without wrapping lines."""
    monkeypatch.setattr(term, "out", Console(width=300))
    monkeypatch.setattr(term, "console", Console(stderr=True, width=300))


@pytest.mark.usefixtures("wide_consoles")
def test_config_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, VALID)
    assert cli.main(["config", "check", str(path)]) == 0
    captured = capsys.readouterr()
    assert f"{path}: OK" in captured.out
    assert "AE NODE_A on port 104, 1 route(s), 1 destination(s)" in captured.out
    assert captured.err == ""


@pytest.mark.usefixtures("wide_consoles")
def test_config_check_lists_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "surprise = 1\n" + VALID.replace('ae_title = "NODE_A"', 'ae_title = "NODE\\\\A"')
    path = write_config(tmp_path, text)
    assert cli.main(["config", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == f"{path}: 2 problem(s)"
    assert len(lines) == 3
    (ae_line,) = [line for line in lines if line.startswith("  - ae_title: ")]
    assert "not a valid AE title" in ae_line
    assert "  - surprise: Extra inputs are not permitted" in lines


@pytest.mark.usefixtures("wide_consoles")
def test_config_check_applies_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DICOM_NODE_PORT", "5104")
    assert cli.main(["config", "check", str(write_config(tmp_path, VALID))]) == 0
    assert "on port 5104" in capsys.readouterr().out


@pytest.mark.usefixtures("wide_consoles")
def test_config_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "check", str(tmp_path / "absent.toml")]) == 1
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.usefixtures("wide_consoles")
def test_config_check_prints_problems_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Problem text (keys and values from the file) is not console markup."""
    path = write_config(tmp_path, '"[/]" = 1\n"[bold]x" = 2\n')
    assert cli.main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "  - [/]: Extra inputs are not permitted" in err
    assert "  - [bold]x: Extra inputs are not permitted" in err


@pytest.mark.usefixtures("wide_consoles")
def test_config_check_builds_the_pipelines_the_routes_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace(
        'pipelines = ["ct_body_part"]', 'pipelines = ["ct_body_part", "chest_xray14"]'
    )
    text += "\n[pipeline_options.ct_body_part]\nmax_scored_slice = 50\n"  # a typo
    path = write_config(tmp_path, text)
    assert cli.main(["config", "check", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"{path}: 2 problem(s)"
    assert "no pipeline named 'chest_xray14'" in lines[1]
    assert "pipeline 'ct_body_part': options ['max_scored_slice'] are not accepted" in lines[2]


@pytest.mark.usefixtures("wide_consoles")
def test_the_example_config_with_its_pipeline_options_passes_config_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """deploy/dicom-node.example.toml, with every commented [pipeline_options.*] block
    uncommented as documented."""
    example = Path(__file__).resolve().parents[2] / "deploy" / "dicom-node.example.toml"
    lines, in_block, blocks = [], False, 0
    for line in example.read_text(encoding="utf-8").splitlines():
        if line.startswith("# [pipeline_options."):
            in_block, blocks = True, blocks + 1
        elif not re.match(r"# \w+ = ", line):
            in_block = False
        lines.append(line[2:] if in_block else line)
    assert blocks == 2  # hand_orientation and ct_body_part
    path = write_config(tmp_path, "\n".join(lines) + "\n")
    settings = load_settings(path)
    assert settings.pipeline_options["ct_body_part"]["max_scored_slices"] == 0
    assert cli.main(["config", "check", str(path)]) == 0, capsys.readouterr().err


def test_config_check_without_a_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["config", "check"])
    assert info.value.code == 2
    assert "file" in capsys.readouterr().err


# -- allowlist hosts ---------------------------------------------------------------------------


def test_allowed_caller_hosts_match_addresses_and_networks() -> None:
    caller = AllowedCaller(ae_title="PACS", hosts=("10.1.2.3", "192.168.0.0/24", "fd00::/64"))
    assert caller.allows_host("10.1.2.3")
    assert not caller.allows_host("10.1.2.4")
    assert caller.allows_host("192.168.0.77")
    assert not caller.allows_host("192.168.1.1")
    assert caller.allows_host("fd00::1")
    assert not caller.allows_host("fe80::1")
    assert not caller.allows_host(None)
    assert not caller.allows_host("not-an-address")
    assert AllowedCaller(ae_title="ANYWHERE").allows_host(None)


@pytest.mark.parametrize("host", ["pacs.example.org", "10.0.0.300", "10.0.0.0/33", ""])
def test_allowed_caller_hosts_must_be_ip_addresses_or_networks(host: str) -> None:
    with pytest.raises(ValidationError, match="not an IP address or network"):
        AllowedCaller(ae_title="PACS", hosts=(host,))


def test_association_timeouts_are_settings(tmp_path: Path) -> None:
    settings = load_settings(
        None, acse_timeout_seconds=5, dimse_timeout_seconds=7, network_timeout_seconds=9
    )
    assert (
        settings.acse_timeout_seconds,
        settings.dimse_timeout_seconds,
        settings.network_timeout_seconds,
    ) == (5, 7, 9)
    with pytest.raises(SettingsError, match="acse_timeout_seconds"):
        load_settings(None, acse_timeout_seconds=0)


@pytest.mark.usefixtures("wide_consoles")
def test_config_check_routing_by_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A route that classifies unclear films names a pipeline the check loads too; the
    choice between header and image is one of two words."""
    route = (
        '\n[[routes]]\nname = "hand"\nmodality = ["CR", "DX"]\nbody_part = ["HAND"]\n'
        'pipelines = ["hand_orientation"]\nwhen_headers_unclear = "{classifier}"\n'
        'check_headers = true\nwhen_headers_disagree = "{follow}"\n'
    )
    good = write_config(tmp_path, VALID + route.format(classifier="xray_triage", follow="image"))
    assert cli.main(["config", "check", str(good)]) == 0
    assert load_settings(good).routes[-1].when_headers_disagree == "image"
    capsys.readouterr()

    unknown = write_config(tmp_path, VALID + route.format(classifier="xray_sorter", follow="image"))
    assert cli.main(["config", "check", str(unknown)]) == 1
    assert "xray_sorter" in capsys.readouterr().err

    bad = write_config(tmp_path, VALID + route.format(classifier="xray_triage", follow="both"))
    assert cli.main(["config", "check", str(bad)]) == 1
    assert "when_headers_disagree" in capsys.readouterr().err
