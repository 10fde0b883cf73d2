"""Local vs Ray engine equality (one shared local Ray session, 2 CPUs)."""

from __future__ import annotations

import shutil

import pytest

import forensics
from forensics.quality import (DuplicatesCheck, HygieneCheck, MistranslationCheck, Pipeline,
                                run_pipeline)

ray = pytest.importorskip("ray")

from test_pipeline import corpus, template_ws  # noqa: E402,F401  (shared fixtures)

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")
def ray_session():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_engine_matches_local(ray_session, template_ws, tmp_path):
    ws_dir = tmp_path / "ws"
    shutil.copytree(template_ws, ws_dir)
    p = Pipeline([HygieneCheck(), DuplicatesCheck(), MistranslationCheck()], name="all")
    q = ('SELECT "check", sample_id, severity, round(score, 6), detail, group_id '
         "FROM quality_findings WHERE pipeline_run_id = ? ORDER BY ALL")
    with forensics.open(ws_dir) as ws:
        local = run_pipeline(ws, p, "train", engine="local", workers=2, batch_size=60)
        rayr = run_pipeline(ws, p, "train", engine="ray", workers=2, batch_size=60, fresh=True)
        assert rayr.engine == "ray" and rayr.pipeline_run_id != local.pipeline_run_id
        a = ws.rows(q, [local.pipeline_run_id])
        b = ws.rows(q, [rayr.pipeline_run_id])
    assert a and a == b
    assert rayr.findings == local.findings and rayr.rows == local.rows


def test_parquet_reader_and_writer_same_on_ray(ray_session, template_ws, tmp_path):
    """The cluster layout: Parquet in, Parquet out, workers read their own slices."""
    import pyarrow.parquet as pq

    from forensics.quality import ReadParquet, WriteParquet

    ws_dir = tmp_path / "ws"
    shutil.copytree(template_ws, ws_dir)
    with forensics.open(ws_dir) as ws:
        tbl = ws.con.sql("SELECT sample_id, row_id, prompt, reply, content_hash, prompt_lang, "
                         "prompt_lang_conf, reply_lang, reply_lang_conf FROM samples "
                         "ORDER BY sample_id").arrow()
        tbl = tbl.read_all() if hasattr(tbl, "read_all") else tbl
        (tmp_path / "in").mkdir()
        pq.write_table(tbl.slice(0, 150), tmp_path / "in" / "a.parquet")
        pq.write_table(tbl.slice(150), tmp_path / "in" / "b.parquet")
        res = {}
        for eng in ("local", "ray"):
            p = Pipeline([ReadParquet(path=str(tmp_path / "in")), HygieneCheck(), DuplicatesCheck(),
                          WriteParquet(path=str(tmp_path / f"out-{eng}"))], name="pq")
            r = run_pipeline(ws, p, "shared-train", engine=eng, workers=2, batch_size=70)
            res[eng] = ws.sql(
                f"SELECT \"check\", sample_id, severity, score, detail, group_id FROM read_parquet("
                f"'{tmp_path}/out-{eng}/run-{r.pipeline_run_id}/*.parquet') ORDER BY ALL").rows()
    assert res["local"] and res["local"] == res["ray"]
