"""Snapshots of an experiment's aggregate (metarep.experiments.snapshot) read back as the same objects."""

import json
import math

import numpy as np
import pytest

from metarep.config import load_config
from metarep.experiments import snapshot
from metarep.experiments.framework import Curve
from metarep.experiments.paper.learning import EigSeries, LearningData


def test_a_nested_aggregate_round_trips(tmp_path):
    cfg = load_config(None, ["task.d=7", "data.tasks=inf"])
    curve = Curve(np.arange(3), np.array([1.0, math.nan, math.inf]), np.array([[0.5, -math.inf]]))
    series = EigSeries("infinite", cfg, [curve], np.array([1.0, 2.0]), np.zeros(2), np.array([1.5, 2.5]))
    rows = [{"label": "inf", "mean": math.nan, "seeds": 2}]  # "inf": a string that must stay one
    snapshot.save(tmp_path / "s.json", "learning", LearningData([series], rows))
    name, back = snapshot.load(tmp_path / "s.json")
    assert name == "learning" and type(back) is LearningData and type(back.series[0]) is EigSeries
    got = back.series[0]
    assert got.config.to_dict() == cfg.to_dict() and got.label == "infinite" and got.predicted.tolist() == [1.5, 2.5]
    assert type(got.curves[0]) is Curve and got.curves[0].x.tolist() == [0, 1, 2] and got.curves[0].x.dtype == np.int64
    np.testing.assert_array_equal(got.curves[0].mean, curve.mean)  # nan and inf kept, exactly
    assert got.curves[0].std.shape == (1, 2) and got.curves[0].std[0, 1] == -math.inf
    assert back.rows[0]["label"] == "inf" and math.isnan(back.rows[0]["mean"]) and back.rows[0]["seeds"] == 2
    json.loads((tmp_path / "s.json").read_text(), parse_constant=pytest.fail)  # plain JSON: no NaN literals


def test_tuples_numpy_scalars_and_dicts_with_other_keys_round_trip():
    obj = {10: (1, [2.5, None]), "__x": np.float32(1.5), "ok": (True, "nan")}
    assert snapshot.decode(json.loads(json.dumps(snapshot.encode(obj)))) == {
        10: (1, [2.5, None]),
        "__x": 1.5,
        "ok": (True, "nan"),
    }


def test_what_is_not_a_snapshot_is_refused(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"format": 99, "experiment": "x", "aggregate": {}}))
    with pytest.raises(ValueError, match="not a metarep figure snapshot"):
        snapshot.load(tmp_path / "a.json")
    bad = {"format": snapshot.FORMAT, "experiment": "x", "aggregate": {"__class__": "os:system", "fields": {}}}
    (tmp_path / "b.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="only metarep's own classes"):
        snapshot.load(tmp_path / "b.json")
    with pytest.raises(TypeError, match="cannot encode a set"):
        snapshot.encode({"a": {1, 2}})
