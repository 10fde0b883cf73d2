"""Validation at the door: one dataset-name rule, enforced where a dataset is created."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("name", ["a/b", "..", ".", "x" * 300, "", "-dash-first", "sp ace", "a\\b"])
def test_ingest_refuses_bad_dataset_names_before_reading(ws_path, cli, tmp_path, name):
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"id": 1, "prompt": "p", "reply": "r"}) + "\n")
    r = cli("ingest", f, "--dataset", name, workspace=ws_path, check=False)
    assert r.returncode == 2, r
    assert "dataset" in r.stderr and "Traceback" not in r.stderr
    assert cli("sql", "SELECT count(*) AS n FROM datasets", "--json", workspace=ws_path).json() == [{"n": 0}]


@pytest.mark.parametrize("name", ["train", "train-v2", "web_2024.q1", "A" * 64])
def test_good_dataset_names_pass(ws_path, cli, tmp_path, name):
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"id": 1, "prompt": "p", "reply": "r"}) + "\n")
    cli("ingest", f, "--dataset", name, "-q", workspace=ws_path)
    assert cli("sql", "SELECT name FROM datasets", "--json", workspace=ws_path).json() == [{"name": name}]
