"""DurableStore: safe paths, placing spooled files, duplicates, spool recovery, space."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.errors import InvalidUID, OutOfResources, UnsafePath
from dicom_node.store import SPOOL_DIR_NAME, DurableStore, Placement

STUDY, SERIES, SOP = "1.2.3", "1.2.3.4", "1.2.3.4.5"
RELATIVE = f"{STUDY}/{SERIES}/{SOP}.dcm"


def spool(store: DurableStore, data: bytes, name: str = "x.part") -> Path:
    path = store.spool_dir / name
    path.write_bytes(data)
    return path


def test_root_and_spool_are_created(tmp_path: Path) -> None:
    store = DurableStore(tmp_path / "a" / "b")
    assert store.root == (tmp_path / "a" / "b").resolve()
    assert store.spool_dir == store.root / SPOOL_DIR_NAME
    assert store.spool_dir.is_dir()


# -- paths -----------------------------------------------------------------------------------


def test_relative_path_for_valid_uids(store: DurableStore) -> None:
    assert store.relative_path_for(STUDY, SERIES, SOP) == RELATIVE


def test_relative_path_strips_padding(store: DurableStore) -> None:
    assert store.relative_path_for(STUDY + "\x00", SERIES + " ", SOP) == RELATIVE


@pytest.mark.parametrize(
    "bad", ["..", "../..", "1.2/../..", "1.2\\..", "1.2\x00/x", "", "a b", ".hidden"]
)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_relative_path_for_rejects_unsafe_uids(
    store: DurableStore, bad: str, position: int
) -> None:
    parts = [STUDY, SERIES, SOP]
    parts[position] = bad
    with pytest.raises(InvalidUID):
        store.relative_path_for(*parts)


def test_resolve_inside_the_root(store: DurableStore) -> None:
    assert store.resolve(RELATIVE) == store.root / STUDY / SERIES / f"{SOP}.dcm"


@pytest.mark.parametrize(
    "relative",
    ["../outside.dcm", "1.2/../../outside.dcm", "/etc/passwd", "", ".", "1.2/.."],
)
def test_resolve_refuses_paths_outside_the_root(store: DurableStore, relative: str) -> None:
    with pytest.raises(UnsafePath, match="leaves the storage root"):
        store.resolve(relative)


@pytest.mark.parametrize(
    "relative", [".incoming/x.dcm", ".incoming", "1.2/../.incoming/x.dcm", "./.incoming/a/b"]
)
def test_resolve_refuses_the_spool(store: DurableStore, relative: str) -> None:
    with pytest.raises(UnsafePath, match="spool"):
        store.resolve(relative)


def test_resolve_refuses_a_symlink_out_of_the_root(store: DurableStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "1.2").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath):
        store.resolve("1.2/1.2.3/1.2.3.4.dcm")


# -- placing -----------------------------------------------------------------------------------


def test_place_new_file(store: DurableStore) -> None:
    spooled = spool(store, b"first copy")
    stored = store.place(spooled, RELATIVE, overwrite=False)

    assert stored.placement is Placement.NEW
    assert stored.relative_path == RELATIVE
    assert stored.path == store.root / RELATIVE
    assert stored.size_bytes == len(b"first copy")
    assert stored.path.read_bytes() == b"first copy"
    assert not spooled.exists()
    assert list(store.spool_dir.iterdir()) == []


def test_duplicate_keep_first_drops_the_spooled_copy(store: DurableStore) -> None:
    store.place(spool(store, b"first copy"), RELATIVE, overwrite=False)
    second = spool(store, b"second, longer copy", "y.part")

    stored = store.place(second, RELATIVE, overwrite=False)

    assert stored.placement is Placement.KEPT_EXISTING
    assert stored.size_bytes == len(b"first copy")
    assert (store.root / RELATIVE).read_bytes() == b"first copy"
    assert not second.exists()


def test_duplicate_overwrite_replaces(store: DurableStore) -> None:
    store.place(spool(store, b"first copy"), RELATIVE, overwrite=False)
    second = spool(store, b"second, longer copy", "y.part")

    stored = store.place(second, RELATIVE, overwrite=True)

    assert stored.placement is Placement.REPLACED
    assert stored.size_bytes == len(b"second, longer copy")
    assert (store.root / RELATIVE).read_bytes() == b"second, longer copy"
    assert not second.exists()


def test_overwrite_of_a_new_path_is_new(store: DurableStore) -> None:
    stored = store.place(spool(store, b"data"), RELATIVE, overwrite=True)
    assert stored.placement is Placement.NEW


def test_place_error_becomes_out_of_resources_and_drops_the_spool_file(
    store: DurableStore,
) -> None:
    (store.root / STUDY).write_bytes(b"a file where the study folder belongs")
    spooled = spool(store, b"data")
    with pytest.raises(OutOfResources, match=f"cannot store {RELATIVE}"):
        store.place(spooled, RELATIVE, overwrite=False)
    assert not spooled.exists()
    assert (store.root / STUDY).read_bytes() == b"a file where the study folder belongs"


def test_place_of_a_missing_spool_file_is_out_of_resources(store: DurableStore) -> None:
    with pytest.raises(OutOfResources):
        store.place(store.spool_dir / "gone.part", RELATIVE, overwrite=False)
    assert not (store.root / RELATIVE).exists()


def test_place_refuses_an_unsafe_target(store: DurableStore) -> None:
    with pytest.raises(UnsafePath):
        store.place(spool(store, b"data"), "../escape.dcm", overwrite=False)
    assert not (store.root.parent / "escape.dcm").exists()


def test_place_refusal_removes_the_spool_file(store: DurableStore) -> None:
    spooled = spool(store, b"data")
    with pytest.raises(UnsafePath):
        store.place(spooled, "../escape.dcm", overwrite=False)
    assert not spooled.exists()


def test_remove(store: DurableStore) -> None:
    store.place(spool(store, b"data"), RELATIVE, overwrite=False)
    store.remove(RELATIVE)
    assert not (store.root / RELATIVE).exists()
    store.remove(RELATIVE)  # already gone: no error
    with pytest.raises(UnsafePath):
        store.remove("../x.dcm")


# -- start-up ------------------------------------------------------------------------------------


def test_clear_spool_removes_leftovers_only(store: DurableStore) -> None:
    store.place(spool(store, b"kept"), RELATIVE, overwrite=False)
    spool(store, b"left 1", "a.part")
    spool(store, b"left 2", "b.part")
    (store.spool_dir / "sub").mkdir()
    (store.spool_dir / "sub" / "c.part").write_bytes(b"left 3")

    assert store.clear_spool() == 3
    assert list(store.spool_dir.iterdir()) == []
    assert store.spool_dir.is_dir()
    assert (store.root / RELATIVE).read_bytes() == b"kept"
    assert store.clear_spool() == 0


def test_iter_stored_lists_only_the_study_series_sop_layout(store: DurableStore) -> None:
    wanted = [
        "1.2/1.2.3/1.2.3.4.dcm",
        "1.2/1.2.3/1.2.3.5.dcm",
        "1.2/1.2.4/1.2.4.1.dcm",
        "1.3/1.3.1/1.3.1.1.dcm",
    ]
    for index, relative in enumerate(wanted):
        store.place(spool(store, b"x", f"{index}.part"), relative, overwrite=False)
    noise = [
        "top.dcm",  # no study folder
        "1.2/study-level.dcm",  # no series folder
        "1.2/1.2.3/notes.txt",  # not .dcm
        "1.2/1.2.3/deeper/1.2.3.9.dcm",  # too deep
        ".incoming/1.9/1.9.1/1.9.1.1.dcm",  # the spool
    ]
    for relative in noise:
        path = store.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"noise")

    assert list(store.iter_stored()) == wanted


def test_iter_stored_empty(store: DurableStore) -> None:
    assert list(store.iter_stored()) == []


# -- space ------------------------------------------------------------------------------------


def test_check_space_with_no_reserve(store: DurableStore) -> None:
    store.check_space(1024)  # does not raise


def test_check_space_raises_below_the_reserve(tmp_path: Path) -> None:
    store = DurableStore(tmp_path / "s", min_free_bytes=10**18)
    with pytest.raises(OutOfResources, match="reserve of 1000000000000000000"):
        store.check_space()


def test_check_space_counts_the_incoming_bytes(store: DurableStore) -> None:
    free = store.free_bytes()
    assert free > 0
    with pytest.raises(OutOfResources):
        store.check_space(free + 10**12)
