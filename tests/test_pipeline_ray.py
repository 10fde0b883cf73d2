"""Local vs Ray engine equality (one shared local Ray session, 2 CPUs)."""

from __future__ import annotations

import shutil

import pytest

import forensics
from forensics.pipeline import (DuplicatesCheck, HygieneCheck, MistranslationCheck, Pipeline,
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
