"""``dicom_node.retraining.retrieve`` without a PACS: the query's validation, the ``[retrieval]``
settings, the C-GET association's storage contexts. The C-FIND / C-MOVE / C-GET against a
real PACS are in ``tests/integration/test_retrieve_orthanc.py``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydicom.uid import CTImageStorage, DigitalXRayImageStorageForPresentation
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet,
)
from sqlalchemy import Engine

from dicom_node.ingest.store_requests import ACCEPTED_TRANSFER_SYNTAXES
from dicom_node.net.pacs_select import StudyPlan
from dicom_node.retraining import retrieve
from dicom_node.retraining.retrieve import PacsQuery, RetrieveError, retrieve_for_training
from dicom_node.settings import NodeSettings, SettingsError, load_settings

# -- the query -------------------------------------------------------------------------------


def test_a_query_normalises_its_code_strings_and_keeps_its_dates() -> None:
    query = PacsQuery(
        modality=("dx", " CR ", "DX"),
        body_part=("hand",),
        study_date_from="20240101",
        study_date_to="20240131",
        max_studies=5,
    )
    assert query.modality == ("DX", "CR")
    assert query.body_part == ("HAND",)
    assert query.date_range() == "20240101-20240131"
    # A plain dataclass to the runner that records it.
    assert dataclasses.asdict(query)["modality"] == ("DX", "CR")
    assert PacsQuery(modality=["CT"]).modality == ("CT",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ""),
        ({"study_date_from": "20240101"}, "20240101-"),
        ({"study_date_to": "20240131"}, "-20240131"),
        ({"study_date_from": "20240101", "study_date_to": "20240101"}, "20240101-20240101"),
    ],
)
def test_the_study_date_matching_key(fields: dict[str, str], expected: str) -> None:
    assert PacsQuery(**fields).date_range() == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"study_date_from": "2024-01-01"}, "'2024-01-01' is not a date as YYYYMMDD"),
        ({"study_date_to": "20240230"}, "'20240230' is not a date as YYYYMMDD"),
        ({"study_date_from": "20240201", "study_date_to": "20240101"}, "is after study_date_to"),
        ({"modality": ("C*",)}, "'C*' is not a DICOM code string"),
        ({"body_part": ("",)}, "'' is not a DICOM code string"),
        ({"modality": ("CT\\MR",)}, "is not a DICOM code string"),
        ({"max_studies": 0}, "max_studies must be at least 1"),
    ],
)
def test_a_bad_query_is_a_validation_error_that_says_why(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        PacsQuery(**fields)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_a_query_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PacsQuery().max_studies = 3  # type: ignore[misc]


# -- the settings ----------------------------------------------------------------------------


def _config(tmp_path: Path, retrieval: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text('ae_title = "NODE"\n\n[retrieval]\n' + retrieval, encoding="utf-8")
    return path


def test_retrieval_settings_from_toml_with_their_defaults(tmp_path: Path) -> None:
    settings = load_settings(
        _config(tmp_path, 'host = "pacs.example.org"\nport = 104\nae_title = "PACS"\n')
    )
    assert settings.retrieval is not None
    assert settings.retrieval.host == "pacs.example.org"
    assert (settings.retrieval.port, settings.retrieval.ae_title) == (104, "PACS")
    assert settings.retrieval.method == "move"
    assert settings.retrieval.move_destination is None
    assert settings.retrieval.timeout_seconds == 60.0
    assert settings.retrieval.max_studies == 100
    assert NodeSettings().retrieval is None


def test_retrieval_by_c_get_with_its_own_limits(tmp_path: Path) -> None:
    settings = load_settings(
        _config(
            tmp_path,
            'host = "10.0.0.5"\nport = 11112\nae_title = "PACS"\nmethod = "get"\n'
            'move_destination = "NODE_AT_PACS"\ntimeout_seconds = 5\nmax_studies = 7\n',
        )
    )
    assert settings.retrieval is not None
    assert settings.retrieval.method == "get"
    assert settings.retrieval.move_destination == "NODE_AT_PACS"
    assert (settings.retrieval.timeout_seconds, settings.retrieval.max_studies) == (5.0, 7)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('host = "h"\nport = 104\nae_title = "P"\nmethod = "fetch"\n', "retrieval.method"),
        ('host = "h"\nport = 0\nae_title = "P"\n', "retrieval.port"),
        ('host = "h"\nport = 104\nae_title = "BACK\\\\SLASH"\n', "retrieval.ae_title"),
        (
            'host = "h"\nport = 104\nae_title = "P"\nmove_destination = "MUCH_TOO_LONG_AE_TITLE"\n',
            "retrieval.move_destination",
        ),
        ('host = "h"\nport = 104\nae_title = "P"\nmax_studies = 0\n', "retrieval.max_studies"),
        ('host = ""\nport = 104\nae_title = "P"\n', "retrieval.host"),
        ('port = 104\nae_title = "P"\n', "retrieval.host"),
        ('host = "h"\nport = 104\nae_title = "P"\nuser = "x"\n', "retrieval.user"),
    ],
)
def test_bad_retrieval_settings_name_the_key(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(_config(tmp_path, text))
    assert any(line.startswith(problem) for line in info.value.problems), info.value.problems


def test_without_a_retrieval_section_nothing_is_queried(engine: Engine) -> None:
    with pytest.raises(RetrieveError, match=r"no \[retrieval\] section"):
        retrieve_for_training(NodeSettings(), engine, PacsQuery())


# -- the C-GET association's storage contexts ------------------------------------------------


def _plan(*sop_classes: str) -> StudyPlan:
    return StudyPlan(uid="1.2.3", study_date=None, study_time="", sop_classes=tuple(sop_classes))


def test_c_get_negotiates_the_classes_the_pacs_names_with_every_accepted_syntax() -> None:
    contexts, roles = retrieve._get_contexts(
        [_plan(CTImageStorage), _plan(CTImageStorage, DigitalXRayImageStorageForPresentation)]
    )
    assert contexts[0].abstract_syntax == StudyRootQueryRetrieveInformationModelGet
    assert [c.abstract_syntax for c in contexts[1:]] == [
        CTImageStorage,
        DigitalXRayImageStorageForPresentation,
    ]
    assert all(list(c.transfer_syntax) == list(ACCEPTED_TRANSFER_SYNTAXES) for c in contexts[1:])
    assert [(r.sop_class_uid, r.scp_role, r.scu_role) for r in roles] == [
        (CTImageStorage, True, False),
        (DigitalXRayImageStorageForPresentation, True, False),
    ]


@pytest.mark.parametrize(
    "studies",
    [
        [_plan()],  # the PACS does not answer SOPClassesInStudy
        [_plan(CTImageStorage), _plan()],
        [_plan("1.2.3.4.5.6")],  # only a class the node does not store
    ],
)
def test_c_get_falls_back_to_common_classes_in_one_association(
    studies: list[StudyPlan],
) -> None:
    contexts, roles = retrieve._get_contexts(studies)
    classes = [c.abstract_syntax for c in contexts[1:]]
    assert len(contexts) <= retrieve.MAX_CONTEXTS
    assert CTImageStorage in classes
    assert DigitalXRayImageStorageForPresentation in classes
    assert "1.2.3.4.5.6" not in classes
    assert len(classes) == len(set(classes)) == len(roles)
    # Small enough for any PACS's association request (a 64 KiB cap is common).
    request_bytes = sum(
        8 + len(str(c.abstract_syntax)) + sum(4 + len(str(ts)) for ts in c.transfer_syntax)
        for c in contexts
    ) + sum(8 + len(str(r.sop_class_uid)) for r in roles)
    assert request_bytes < 32 * 1024
