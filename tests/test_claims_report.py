"""The claims report names, per row, the scale and device its value came from."""

from __future__ import annotations

import json

from lowrank_es.claims.registry import table
from lowrank_es.results import to_jsonable


def _record(cid: str, scale: str | None) -> dict:
    return {"id": cid, "measured": 0.5, "uncertainty": 0.1, "target": ">= 0.2", "holds": True,
            "seeds": 3, "device": "cpu:cpu", "scale": scale}


def test_markdown_report_has_a_scale_column():
    md = table([_record("a.b", "reference"), _record("c.d", None)], markdown=True).splitlines()
    header = [c.strip() for c in md[0].strip("|").split("|")]
    assert header[5] == "scale" and header[6] == "device"
    assert [c.strip() for c in md[2].strip("|").split("|")][5] == "reference"
    assert [c.strip() for c in md[3].strip("|").split("|")][5] == "n/a"


def test_records_with_numpy_values_and_nan_serialise_as_json():
    import numpy as np

    rec = {"measured": np.float32(0.25), "details": {"curve": np.arange(3), "bad": float("nan")}}
    out = json.loads(json.dumps(to_jsonable(rec)))
    assert out == {"measured": 0.25, "details": {"curve": [0, 1, 2], "bad": None}}
