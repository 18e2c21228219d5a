"""The messages a confined worker sends the trusted process are read strictly: the wire format
(:mod:`rewardlab.reward.wire`) and the packed per-step infos (:mod:`rewardlab.workers.infos`)
round-trip what a worker means to send and refuse everything else with one error type."""

from __future__ import annotations

import json
import math
import os
import struct
import time
from typing import Any

import numpy as np
import pytest

from rewardlab.reward import wire
from rewardlab.workers.infos import MAX_SCHEMAS, InfoPacker, InfoTable, MalformedInfos


def _through(packer: InfoPacker, table: InfoTable, infos: list[Any]) -> list[Any]:
    """``infos`` packed by a worker, sent over a pipe and unpacked by the trusted side."""
    header, arrays = packer.pack(infos)
    r, w = os.pipe()
    try:
        wire.send(w, {"ok": True, **header}, arrays)
        got, got_arrays = wire.Reader(r).read(time.monotonic() + 10)
    finally:
        os.close(r)
        os.close(w)
    if "schemas" in got:
        table.define(got.pop("schemas"))
    return table.unpack(got, *got_arrays, optional=True)


def test_infos_round_trip_with_their_types() -> None:
    packer, table = InfoPacker(), InfoTable()
    info = {
        "success": np.bool_(True), "done": False, "count": 3, "big": 2**60,
        "x": np.float64(0.25), "y": np.float32(1.5), "n": np.int64(-7), "nan": float("nan"),
        "vec": np.arange(3.0), "name": "ok", "terminal_observation": np.zeros(3),
        "huge_array": np.zeros(100), "obj": object(), "long": "x" * 500, 5: 1.0,
    }  # fmt: skip
    first, none, second = _through(packer, table, [info, None, {"x": 1.0}])
    assert none is None and second == {"x": 1.0}
    assert math.isnan(first.pop("nan"))
    assert first == {
        "success": True, "done": False, "count": 3, "big": float(2**60), "x": 0.25, "y": 1.5,
        "n": -7, "vec": [0.0, 1.0, 2.0], "name": "ok",
    }  # fmt: skip
    assert [type(first[k]) for k in ("success", "count", "x", "n")] == [bool, int, float, int]
    # the same kinds of dict again: no schema is sent twice
    header, _ = packer.pack([info, None, {"x": 2.0}])
    assert "schemas" not in header
    assert _through(packer, table, [{"x": 2.0}])[0] == {"x": 2.0}


def test_a_worker_that_runs_out_of_schema_ids_starts_over() -> None:
    packer, table = InfoPacker(), InfoTable()
    for i in range(3 * MAX_SCHEMAS):
        info = {f"k{i}": float(i), "flag": i % 2 == 0}
        assert _through(packer, table, [info, {"x": 1.0}]) == [info, {"x": 1.0}]
    assert len(table._schemas) <= MAX_SCHEMAS


def _table() -> InfoTable:
    table = InfoTable()
    table.define([[0, ["a", "b", "c"], "fbi"], [1, [], ""]])
    return table


GOOD_IDS, GOOD_VALUES = np.array([0, 1], np.int32), np.array([1.0, 0.0, 2.0])


@pytest.mark.parametrize(
    "schemas",
    [
        "x", [[0, ["a"]]], [[MAX_SCHEMAS, ["a"], "f"]], [[-1, ["a"], "f"]], [[True, ["a"], "f"]],
        [[0, ["a" * 201], "f"]], [[0, ["a", "a"], "ff"]], [[0, ["a"], "ff"]], [[0, ["a"], "o"]],
        [[0, [1], "f"]], [[0, ["terminal_observation"], "f"]], [[0, "ab", "ff"]],
        [[0, [f"k{i}" for i in range(257)], "f" * 257]], [[0, [], ""]] * (MAX_SCHEMAS + 1),
    ],
)  # fmt: skip
def test_bad_schemas_are_refused(schemas: Any) -> None:
    with pytest.raises(MalformedInfos):
        InfoTable().define(schemas)


@pytest.mark.parametrize(
    ("ids", "values", "extras", "optional"),
    [
        ([0, 2], GOOD_VALUES, None, True),  # an undefined schema
        ([0, -1], GOOD_VALUES[:3], None, False),  # no info where one is due
        ([0, 1], GOOD_VALUES[:2], None, True),  # values shorter than announced
        ([0, 1], np.append(GOOD_VALUES, 1.0), None, True),  # ... or longer
        ([0, 1], GOOD_VALUES.astype(np.float32), None, True),  # wrong dtypes
        (np.array([0, 1], np.int64), GOOD_VALUES, None, True),
        ([0, 1], np.array([1.0, 0.0, np.nan]), None, True),  # an int that is not one
        ([0, 1], np.array([1.0, 0.0, np.inf]), None, True),
        ([0, 1], GOOD_VALUES, [[5, {"s": "x"}]], True),  # extras for no info
        ([0, 1], GOOD_VALUES, [[0, {"a": "x"}]], True),  # ... overwriting a value
        ([0, 1], GOOD_VALUES, [[0, {"s": {"nested": 1}}]], True),
        ([0, 1], GOOD_VALUES, [[0, {"s": "x" * 201}]], True),
        ([0, 1], GOOD_VALUES, [[0, {"s": [1.0] * 17}]], True),
        ([0, 1], GOOD_VALUES, [[0, {"s": [True]}]], True),
        ([0, 1], GOOD_VALUES, [[0, {"terminal_observation": [1.0]}]], True),
        ([0, 1], GOOD_VALUES, [[0, {f"k{i}": "x" for i in range(254)}]], True),
        ([0, 1], GOOD_VALUES, [[0, {"s": "x"}]] * 3, True),
        ([0, 1], GOOD_VALUES, {"0": {"s": "x"}}, True),
    ],
)
def test_bad_infos_are_refused(ids: Any, values: Any, extras: Any, optional: bool) -> None:
    header = {} if extras is None else {"extras": extras}
    table = _table()
    assert table.unpack({}, GOOD_IDS, GOOD_VALUES, optional=False) == [
        {"a": 1.0, "b": False, "c": 2},
        {},
    ]
    with pytest.raises(MalformedInfos):
        table.unpack(header, np.asarray(ids, dtype=np.int32) if isinstance(ids, list) else ids,
                     values, optional=optional)  # fmt: skip


def _message(header: dict[str, Any], specs: list[Any], payload: bytes) -> bytes:
    text = json.dumps({**header, "~arrays": specs}).encode()
    return struct.pack("<4sIQ", b"RLW1", len(text), len(payload)) + text + payload


def test_the_reader_splits_messages_and_refuses_bad_ones() -> None:
    r, w = os.pipe()
    reader = wire.Reader(r)
    try:
        a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True, False])
        os.write(w, wire.encode({"n": 1}, [a, b]) + wire.encode({"n": 2}))  # two at once
        (h1, (a1, b1)), (h2, arrays2) = reader.read(time.monotonic() + 5), reader.read()
        assert h1 == {"n": 1} and h2 == {"n": 2} and arrays2 == []
        assert np.array_equal(a1, a) and a1.dtype == a.dtype and np.array_equal(b1, b)
        a1 += 1  # writable, and not shared with the next message
        message = wire.encode({"n": 3}, [a])  # arriving in pieces
        os.write(w, message[:5])
        with pytest.raises(wire.WireTimeout):
            reader.read(time.monotonic() + 0.05)
        os.write(w, message[5:])
        assert np.array_equal(reader.read(time.monotonic() + 5)[1][0], a)
        for bad in (
            _message({}, [["|O", [1]]], b"\0" * 8),  # objects
            _message({}, [["<c16", [1]]], b"\0" * 16),  # not a plain number type
            _message({}, [["<M8[s]", [1]]], b"\0" * 8),
            _message({}, [["<f8", [2]]], b"\0" * 8),  # shorter than announced
            _message({}, [["<f8", [1]]], b"\0" * 16),  # longer
            _message({}, [["<f8", [-1]]], b""),
            _message({}, [["<f8", [1.5]]], b"\0" * 8),
            b"RLW1" + b"\xff" * 12,  # oversized
            b"XXXX" + b"\0" * 12,
        ):
            os.write(w, bad)
            with pytest.raises(wire.WireError):
                reader.read(time.monotonic() + 5)
            reader = wire.Reader(r)  # the trusted side drops a worker after one bad message
    finally:
        os.close(w)
    with pytest.raises(wire.WireClosed):
        reader.read(time.monotonic() + 5)
    os.close(r)
