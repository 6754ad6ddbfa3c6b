"""benchmarks/playground.py: a smoke run end to end, and the committed result agrees with its own rule."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from course_ddpm.results import load_result

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("bench_playground", BENCHMARKS / "playground.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCHMARKS))


def test_a_smoke_run_writes_rows_and_the_meta(script, tmp_path, capsys, one_thread):
    out = tmp_path / "playground.json"
    result = script.main(["--threads", "1", "--steps", "20", "--eval-every", "10", "--n-samples", "50",
                          "--json", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r["step"] for r in result["rows"]] == [10, 20]
    assert result["n_samples"] == 50 and result["n_reference"] == 500
    assert "load_average" in result["meta"] and result["threads"] == 1
    assert "good" in capsys.readouterr().out


def test_the_committed_result_follows_its_rule(script):
    bench = load_result("playground")
    rule = bench["good_if"]
    rows = bench["rows"]
    for row in rows:
        score = script.playground.Score(row["swd"], row["swd_floor"], row["log_likelihood"], row["log_likelihood_true"])
        assert row["good"] == script.is_good(score, rule["swd_ratio"], rule["ll_gap_nats"])
    first = next(r for r in rows if r["good"])
    assert bench["first_good"]["step"] == first["step"]
    assert bench["first_good"]["wall_s"] == first["train_wall_s"] + first["sample_wall_s"]
    assert bench["config"]["steps"] == rows[-1]["step"]
