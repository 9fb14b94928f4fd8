"""Reading nsys exports: a real H100 fixture with exact numbers, and every kind of bad input."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from profkit import parse
from tests.conftest import export_variant

DATA = Path(__file__).parent / "data"
ENCODER = DATA / "h100_encoder_layer_nsys2023" / "profile.sqlite"
AUTOGRAD_TID = 281482459349467  # the fixture's autograd thread (launches backward)
MAIN_TID = 281482459349438


@pytest.fixture(scope="module")
def encoder() -> parse.ProfileData:
    return parse.load(ENCODER)


def test_encoder_fixture_counts(encoder: parse.ProfileData) -> None:
    assert len(encoder.kernels) == 234
    assert len(encoder.nvtx) == 27  # push/pop ranges (the 28th event is a domain create)
    assert encoder.nvtx["name"].value_counts()["forward"] == 3
    assert encoder.kernels["dur_ns"].sum() == 8_901_567
    assert (encoder.kernels["launch_tid"] >= 0).all()  # every kernel joined to its launch
    assert set(encoder.kernels["launch_tid"]) == {MAIN_TID, AUTOGRAD_TID}
    assert (encoder.kernels["launch_tid"] == AUTOGRAD_TID).sum() == 129
    assert encoder.gpus["name"].tolist() == ["NVIDIA H100 80GB HBM3"]
    assert len(encoder.memcpy) == 12 and len(encoder.memset) == 33
    assert list(encoder.kernels.columns[:3]) == ["start_ns", "end_ns", "device_id"]
    assert str(encoder.kernels["start_ns"].dtype) == "int64"


def test_reading_leaves_the_file_alone(tmp_path: Path) -> None:
    copy = tmp_path / "p.sqlite"
    shutil.copyfile(ENCODER, copy)
    before = copy.read_bytes()
    parse.load(copy)
    assert copy.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.sqlite"]  # no journal, no -wal


def test_parsing_does_not_import_torch() -> None:
    code = ("import sys; from profkit import parse, analyze, report, pipeline, layout, nsys; "
            f"parse.load({str(ENCODER)!r}); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_correlation_ids_join_within_a_process(tmp_path: Path) -> None:
    """Two processes reusing a correlation id: each kernel joins its own process's launch."""
    copy = tmp_path / "p.sqlite"
    shutil.copyfile(ENCODER, copy)
    db = sqlite3.connect(copy)
    other_tid = MAIN_TID + (1 << 24)  # same layout, next process id
    cid, start = db.execute("SELECT correlationId, start FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE correlationId IN "
                            "(SELECT correlationId FROM CUPTI_ACTIVITY_KIND_KERNEL) LIMIT 1").fetchone()
    db.execute("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME (start, end, eventClass, globalTid, correlationId, nameId, "
               "returnValue) VALUES (?, ?, 1, ?, ?, 1, 0)", (start - 999, start - 998, other_tid, cid))
    db.commit()
    db.close()
    k = parse.load(copy).kernels
    assert len(k) == 234
    assert set(k["launch_tid"]) == {MAIN_TID, AUTOGRAD_TID}


def test_missing_tables_are_empty_frames(tmp_path: Path) -> None:
    data = parse.load(export_variant(tmp_path, "DROP TABLE NVTX_EVENTS", "DROP TABLE CUPTI_ACTIVITY_KIND_MEMSET",
                                 "DROP TABLE CUPTI_ACTIVITY_KIND_RUNTIME"))
    assert data.nvtx.empty and list(data.nvtx.columns)[:2] == ["start_ns", "end_ns"]
    assert data.memset.empty
    assert len(data.kernels) == 234 and (data.kernels["launch_tid"] == -1).all()


def test_inline_text_and_registered_strings_and_null_end(tmp_path: Path) -> None:
    copy = export_variant(tmp_path,
                      "INSERT INTO StringIds (id, value) VALUES (99999, 'registered_range')",
                      "UPDATE NVTX_EVENTS SET text = NULL, textId = 99999 WHERE rowid = (SELECT min(rowid) FROM "
                      "NVTX_EVENTS WHERE text = 'optimizer')",
                      "UPDATE NVTX_EVENTS SET end = NULL WHERE text = 'step_2'")
    nvtx = parse.load(copy).nvtx
    assert "registered_range" in set(nvtx["name"])
    assert nvtx.loc[nvtx["name"] == "step_2", "end_ns"].isna().all()


def test_event_types_are_looked_up_by_name(tmp_path: Path) -> None:
    """An export that numbers NvtxPushPopRange differently still yields its ranges."""
    copy = export_variant(tmp_path, "UPDATE NVTX_EVENTS SET eventType = 1059 WHERE eventType = 59",
                      "UPDATE ENUM_NSYS_EVENT_TYPE SET id = 1059 WHERE name = 'NvtxPushPopRange'")
    assert len(parse.load(copy).nvtx) == 27


def test_kernel_name_columns_may_be_missing(tmp_path: Path) -> None:
    copy = export_variant(tmp_path, "ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL DROP COLUMN mangledName")
    assert len(parse.load(copy).kernels) == 234


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_text("hello, not a database\n" * 100), "is not a readable SQLite file"),
    (lambda p: p.write_bytes(b""), "is empty; export the capture again"),
    (lambda p: p.write_bytes(ENCODER.read_bytes()[:4096]), "is not a readable SQLite file"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE songs (title TEXT)").connection.commit(),
     "is SQLite but not an nsys export"),
])
def test_bad_files(tmp_path: Path, make, message: str) -> None:
    p = tmp_path / "bad.sqlite"
    make(p)
    with pytest.raises(parse.ProfileError, match=message):
        parse.load(p)


def test_damaged_database(tmp_path: Path) -> None:
    """Pages zeroed mid-file: the header reads, the tables do not."""
    raw = bytearray(ENCODER.read_bytes())
    raw[len(raw) // 3: len(raw) // 3 + 65536] = b"\0" * 65536
    p = tmp_path / "damaged.sqlite"
    p.write_bytes(bytes(raw))
    with pytest.raises(parse.ProfileError, match="is damaged|not a readable SQLite"):
        parse.load(p)


def test_incomplete_export_is_refused(tmp_path: Path) -> None:
    """As when nsys's analysis stops early: CUDA ends long before the NVTX ranges do."""
    copy = export_variant(tmp_path, "UPDATE NVTX_EVENTS SET end = end + 3000000000 WHERE text = 'step_2'")
    with pytest.raises(parse.ProfileError, match=r"looks incomplete: its 234 kernels end 3\.0 s before its NVTX "
                                                 r"ranges do.*--allow-incomplete"):
        parse.load(copy)
    assert len(parse.load(copy, allow_incomplete=True).kernels) == 234
