"""NLA commands end to end through the real CLI (subprocesses), a real DuckDB workspace, real
tiny checkpoints, and a real HTTP server process speaking the SGLang / vLLM protocols."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import forensics
from forensics.nla import tiny

from conftest import REPO
from conftest import run_cli as _run_cli

# Tiny models: one intra-op thread is ~10x faster than two on a busy 2-core machine.
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_cli(*args, **kw):
    kw["env"] = {**THREADS, **(kw.get("env") or {})}
    return _run_cli(*args, **kw)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _add_samples(ws_path: Path, dataset: str, n: int) -> None:
    ws = forensics.open(ws_path)
    try:
        ws.ensure_dataset(dataset)
        langs = ["What is the capital of France?", "Wie heißt die Hauptstadt?", "Кто написал роман?",
                 "Please list three rivers", "How old is the city?", "¿Dónde está el río?"]
        for i in range(n):
            p = f"{langs[i % len(langs)]} (sample {i})"
            r = f"The answer to question {i} is short." if i % 5 else ""
            ws.execute("INSERT INTO samples (sample_id, dataset, row_id, prompt, reply, content_hash) "
                       "VALUES (nextval('sample_id_seq'), ?, ?, ?, ?, ?)",
                       [dataset, f"row-{i}", p, r, hashlib.sha256(f"{p}\x1f{r}".encode()).hexdigest()])
    finally:
        ws.close()


def _add_anomaly(ws_path: Path) -> int:
    ws = forensics.open(ws_path)
    try:
        aid = ws.next_id("anomaly_id_seq")
        ws.execute("INSERT INTO anomalies (anomaly_id, title, prompt, reply) VALUES (?, ?, ?, ?)",
                   [aid, "answers in Russian", "What is the capital of France?", "Столица Франции — Париж."])
        return aid
    finally:
        ws.close()


def _q(ws_path: Path, sql: str, params=None):
    ws = forensics.open(ws_path, read_only=True)
    try:
        return ws.rows(sql, params or [])
    finally:
        ws.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("nla_cli")
    n = tiny.build_tiny_nla(root / "qwen2", "qwen2", hidden_size=64, num_layers=4, layer=2)
    ws = root / "ws"
    run_cli("init", workspace=ws)
    _add_samples(ws, "train", 12)
    aid = _add_anomaly(ws)
    reg = run_cli("nla", "register", "q", "--av", n.av, "--ar", n.ar, "--target", n.target, "--json",
                  workspace=ws).json()
    return SimpleNamespace(root=root, nla=n, ws=ws, anomaly=aid, reg=reg)


@pytest.fixture(scope="module")
def server(env):
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "fake_server.py"), "nla", str(env.nla.av), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **THREADS, "PYTHONPATH": str(REPO)})
    try:
        line = proc.stdout.readline()
        assert line.startswith("LISTENING"), (line, proc.stderr.read() if proc.poll() is not None else "")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def explainer(env):
    """The NLA loaded once in this process, for API-level checks next to the CLI runs."""
    from forensics.nla import Explainer, get_nla

    with forensics.open(env.ws, read_only=True) as ws:
        rec = get_nla(ws, "q")
    return Explainer(rec, max_new_tokens=8)


def test_register_validates_and_lists(env, tmp_path):
    from forensics.nla.meta import NLAContractError
    from forensics.nla import register_nla

    r = env.reg
    assert r["status"] == "added" and r["layer"] == 2 and r["hidden_state_index"] == 3 and r["d_model"] == 64
    assert r["injection_scale"] == pytest.approx(8.0)
    ws, n = env.ws, env.nla
    bad = run_cli("nla", "register", "x", "--av", n.av, "--ar", n.ar, "--target", n.target, "--layer", "1",
                  workspace=ws, check=False)
    assert bad.returncode == 2 and "disagrees" in bad.stderr and "ar.num_hidden_layers" in bad.stderr
    lst = run_cli("nla", "list", "--json", workspace=ws).json()
    assert [x["name"] for x in lst["nlas"]] == ["q"]
    other = tmp_path / "other"  # a target of another width: the NLA was not trained for it
    tok = tiny.build_tokenizer("qwen2")
    tiny.build_target("qwen2", tok, hidden_size=32, num_layers=4).save_pretrained(str(other))
    tok.save_pretrained(str(other))
    with forensics.open(ws) as w:
        assert register_nla(w, "q", n.av, n.target, n.ar)[1] == "unchanged"
        with pytest.raises(NLAContractError, match="d_model.*hidden_size 32"):
            register_nla(w, "x", n.av, other)
        with pytest.raises(NLAContractError, match="nla_meta.yaml"):
            register_nla(w, "x", n.target, n.target)
        with pytest.raises(Exception, match="hidden-state-index 9"):
            register_nla(w, "x", n.av, n.target, hidden_state_index=9)
        with pytest.raises(Exception, match="already registered"):
            register_nla(w, "q", n.av, n.target)  # same name, no AR: other config
        assert [x[0] for x in w.rows("SELECT name FROM nlas")] == ["q"]


def test_explain_anomaly_stores_rows_on_the_anomaly(env, explainer):
    from forensics.nla import explain_anomaly

    ws = env.ws
    res = run_cli("explain", "anomaly", str(env.anomaly), "--nla", "q", "--position", "last_prompt,first_reply",
                  "--position", "reply:3", "--max-new-tokens", "8", "--json", workspace=ws).json()
    assert res["stored"] == len(res["explanations"]) == 3
    rows = _q(ws, "SELECT sample_id, anomaly_id, nla_id, position, layer, hidden_state_index, mse, cos, "
                  "explanation_key, raw_output, truncated, token_index FROM explanations WHERE anomaly_id = ?",
              [env.anomaly])
    assert len(rows) == res["stored"]
    positions = {r[3] for r in rows}
    assert positions == {"last_prompt", "first_reply", "reply:3"}
    for sid, aid, nla, pos, layer, hsi, mse, cos, key, raw, trunc, tix in rows:
        assert sid is None and aid == env.anomaly and nla == "q" and layer == 2 and hsi == 3
        assert key == f"a{env.anomaly}|q|{pos}|L2|h3"
        assert mse == pytest.approx(2 * (1 - cos), abs=1e-4)
        assert raw is not None and trunc is True
    with forensics.open(ws) as w:  # re-running replaces, never duplicates; same greedy text
        again = explain_anomaly(w, env.anomaly, "q", ["last_prompt,first_reply", "reply:3"], explainer=explainer)
        assert w.one("SELECT count(*) FROM explanations WHERE anomaly_id = ?", [env.anomaly])[0] == len(rows)
    assert [e["text"] for e in again["explanations"]] == [e["text"] for e in res["explanations"]]
    miss = run_cli("explain", "anomaly", "999", "--nla", "q", workspace=ws, check=False)
    assert miss.returncode == 4 and "anomaly 999" in miss.stderr
    miss = run_cli("explain", "anomaly", str(env.anomaly), "--nla", "nope", workspace=ws, check=False)
    assert miss.returncode == 4 and "not registered" in miss.stderr


def test_explain_anomaly_lingers_between_its_reads_and_writes(env, explainer, monkeypatch):
    """Back-to-back explain_anomaly calls with a loaded explainer share one open while the
    connection lingers; with linger 0 each read and each write opens the database (2 per
    call). The lock params in force come back with the result; once the linger delay passes
    unused, another process can write."""
    from forensics import workspace
    from forensics.nla import explain_anomaly
    from forensics.workspace import LockParams

    opens = []
    connect = workspace.Workspace._connect
    monkeypatch.setattr(workspace.Workspace, "_connect", lambda self: opens.append(1) or connect(self))
    counts = {}
    for linger in (30.0, 0.0):
        with forensics.open(env.ws) as w:
            opens.clear()
            lock = LockParams(linger_seconds=linger, hold_seconds=60.0)
            for _ in range(2):
                res = explain_anomaly(w, env.anomaly, "q", ["last_prompt"], explainer=explainer,
                                      lock=lock)
            counts[linger] = len(opens)
            assert res["lock"] == {"linger_seconds": linger, "hold_seconds": 60.0}
    assert counts == {30.0: 0, 0.0: 3}     # (the open of forensics.open serves the first read)
    with forensics.open(env.ws) as w:
        res = explain_anomaly(w, env.anomaly, "q", ["last_prompt"], explainer=explainer,
                              lock=LockParams(linger_seconds=0.2))
        time.sleep(1.0)
        code = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('CHECKPOINT')"
        assert subprocess.run([sys.executable, "-c", code, str(w.db_path)],
                              capture_output=True).returncode == 0


def test_explain_dataset_is_idempotent_then_check(env, explainer):
    from forensics.nla import explain_dataset

    ws = env.ws
    a = run_cli("explain", "dataset", "train", "--nla", "q", "--limit", "6", "--batch-size", "4",
                "--max-new-tokens", "8", "--json", workspace=ws).json()
    assert a["explanations_stored"] == 6 and a["samples_processed"] == 6 and a["status"] == "done"
    assert a["explanations_per_s"] > 0 and a["tokens_per_s"] > 0 and a["variance"] > 0
    with forensics.open(ws) as w:
        b = explain_dataset(w, "train", "q", batch_size=4, explainer=explainer)
        assert b.skipped_done == 6 and b.explanations_stored == 6
        c = explain_dataset(w, "train", "q", explainer=explainer)
        assert c.explanations_stored == 0 and c.skipped_done == 12
    rows = _q(ws, "SELECT sample_id, dataset, position, fve, mse, explanation_key FROM explanations "
                  "WHERE sample_id IS NOT NULL AND nla_id = 'q'")
    assert len(rows) == 12 and len({r[0] for r in rows}) == 12
    assert all(r[1] == "train" and r[2] == "last_prompt" and r[3] is not None for r in rows)
    assert all(r[5] == f"s{r[0]}|q|last_prompt|L2|h3" for r in rows)
    # the variance estimated once is recorded on the NLA and reused
    assert a["variance"] == pytest.approx(b.variance) and "recorded" in b.variance_source
    runs = _q(ws, "SELECT status FROM explain_runs WHERE dataset = 'train' ORDER BY run_id")
    assert [r[0] for r in runs] == ["done", "done", "done"]

    chk = run_cli("nla", "check", "q", "--dataset", "train", "--n", "8", "--max-new-tokens", "8", "--json",
                  "--min-fve", "0.5", workspace=ws, check=False)
    assert chk.returncode == 1 and "below --min-fve" in chk.stderr  # random weights reconstruct nothing
    chk = chk.json()
    assert chk["samples"] == 8 and chk["explained"] == 8
    for k in ("fve", "cos", "mse"):
        assert set(chk[k]) == {"n", "mean", "median", "p10", "p90"} and chk[k]["n"] == 8
        assert chk[k]["p10"] <= chk[k]["median"] <= chk[k]["p90"]
    assert chk["share_truncated"] == 1.0  # random weights never close the tag
    assert 0.0 <= chk["share_failed"] <= 1.0 and chk["share_early_position"] == 0.0


def test_import_keeps_good_rows_and_rejects_bad(env, tmp_path):
    ws = env.ws
    f = tmp_path / "ext.jsonl"
    lines = [
        json.dumps({"row_id": "row-1", "text": "<explanation>The prompt reads like a translation.</explanation>",
                    "position": "last_prompt", "layer": 20, "mse": 0.3, "cos": 0.85, "fve": 0.6}),
        json.dumps({"row_id": "row-2", "text": "A plain explanation", "raw_output": "raw"}),
        json.dumps({"row_id": "no-such-row", "text": "x"}),
        "{not json",
        json.dumps({"row_id": "row-3"}),
        json.dumps({"row_id": "row-4", "text": "y", "mse": "high"}),
        json.dumps({"row_id": "row-5", "text": "<explanation>cut off"}),
    ]
    f.write_text("\n".join(lines) + "\n")
    st = run_cli("explanations", "import", f, "--dataset", "train", "--nla-label", "ext", "--json", workspace=ws).json()
    assert st["rows_read"] == 7 and st["added"] == 3 and st["rejected"] == 4
    assert st["reject_reasons"] == {"unknown_row_id": 1, "malformed_json": 1, "missing_field": 1, "bad_field": 1}
    rej = _q(ws, "SELECT line, reason, field FROM rejects WHERE file = ? ORDER BY line", [str(f)])
    assert [(r[0], r[1]) for r in rej] == [(3, "unknown_row_id"), (4, "malformed_json"), (5, "missing_field"),
                                           (6, "bad_field")]
    got = {r[0]: r for r in _q(ws, "SELECT s.row_id, e.text, e.truncated, e.layer, e.fve, e.raw_output, e.position "
                                   "FROM explanations e JOIN samples s USING (sample_id) WHERE e.nla_id = 'ext'")}
    assert got["row-1"][1] == "The prompt reads like a translation." and got["row-1"][3] == 20
    assert got["row-1"][4] == pytest.approx(0.6) and got["row-1"][6] == "last_prompt"
    assert got["row-2"][5] == "raw" and got["row-2"][6] == "imported"
    assert got["row-5"][1] == "cut off" and got["row-5"][2] is True
    again = run_cli("explanations", "import", f, "--dataset", "train", "--nla-label", "ext", "--json",
                    workspace=ws).json()
    assert again["added"] == 0 and again["unchanged"] == 3
    assert _q(ws, "SELECT count(*) FROM rejects WHERE file = ?", [str(f)])[0][0] == 4
    # Parquet
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = tmp_path / "ext.parquet"
    pq.write_table(pa.table({"row_id": ["row-6", "row-7", "zzz"], "text": ["a", "b", "c"],
                             "cos": [0.5, None, 0.1]}), pf)
    st = run_cli("explanations", "import", pf, "--dataset", "train", "--json", workspace=ws).json()
    assert st["added"] == 2 and st["rejected"] == 1 and st["nla_label"] == "import:ext"


def test_http_backends_match_local(env, server, explainer):
    import torch

    from forensics.nla.av import AV

    torch.manual_seed(7)
    vs = [torch.randn(64) for _ in range(5)]
    local = explainer.av.explain(vs, batch_size=5, max_new_tokens=10)
    sgl = AV.load(env.nla.av, backend="sglang", server=server, max_new_tokens=10).explain(vs, batch_size=5)
    vll = AV.load(env.nla.av, backend="vllm", server=server, max_new_tokens=10).explain(vs, batch_size=5)
    key = lambda e: (e.text, e.raw_output, e.truncated, e.finish_reason)  # noqa: E731
    assert [key(e) for e in sgl] == [key(e) for e in local]
    assert [key(e) for e in vll] == [key(e) for e in local]
    assert [e.n_tokens for e in sgl] == [e.n_tokens for e in local]  # vLLM reports only a total
    assert len({e.raw_output for e in local}) > 1
    # through the CLI against the server: the same stored explanations as in-process local runs
    b = run_cli("explain", "anomaly", str(env.anomaly), "--nla", "q", "--max-new-tokens", "8", "--backend", "sglang",
                "--server", server, "--json", workspace=env.ws).json()
    rows, _ = explainer.run([("What is the capital of France?", "Столица Франции — Париж.")],
                            ["last_prompt", "first_reply"])
    assert [e["text"] for e in b["explanations"]] == [r.text for r in rows]
    assert [e["mse"] for e in b["explanations"]] == pytest.approx([r.mse for r in rows], abs=1e-5)
    from forensics.errors import BackendError

    with pytest.raises(BackendError, match="cannot reach"):
        AV.load(env.nla.av, backend="vllm", server="http://127.0.0.1:9").explain(vs[:1])


def test_resume_after_kill(env, tmp_path):
    ws = tmp_path / "ws"
    run_cli("init", workspace=ws)
    _add_samples(ws, "big", 10)
    n = env.nla
    run_cli("nla", "register", "q", "--av", n.av, "--ar", n.ar, "--target", n.target, workspace=ws)
    cmd = [sys.executable, "-m", "forensics", "--workspace", str(ws), "explain", "dataset", "big", "--nla", "q",
           "--batch-size", "2", "--max-new-tokens", "4", "--variance", "0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **THREADS, "PYTHONPATH": str(REPO)})
    seen = ""
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if line.startswith("committed 4/"):
            proc.send_signal(signal.SIGKILL)  # hard kill mid-run: no cleanup code runs
            break
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, seen
    before = _q(ws, "SELECT count(*) FROM explanations")[0][0]
    assert 4 <= before < 10
    res = run_cli("explain", "dataset", "big", "--nla", "q", "--batch-size", "4", "--max-new-tokens", "4",
                  "--variance", "0.5", "--json", workspace=ws).json()
    assert res["skipped_done"] == before and res["explanations_stored"] == 10 - before
    keys = _q(ws, "SELECT explanation_key, count(*) FROM explanations GROUP BY 1 HAVING count(*) > 1")
    assert keys == []
    assert _q(ws, "SELECT count(*), count(DISTINCT sample_id) FROM explanations")[0] == (10, 10)
    assert _q(ws, "SELECT count(*) FROM explain_progress WHERE status = 'ok'")[0][0] == 10
    # the killed run is visible as such
    assert [r[0] for r in _q(ws, "SELECT status FROM explain_runs ORDER BY run_id")] == ["running", "done"]


@pytest.mark.slow
@pytest.mark.ray
def test_ray_engine_matches_local(env, explainer):
    pytest.importorskip("ray")
    ws, n = env.ws, env.nla
    run_cli("nla", "register", "qr", "--av", n.av, "--ar", n.ar, "--target", n.target, workspace=ws)
    res = run_cli("explain", "dataset", "train", "--nla", "qr", "--engine", "ray", "--limit", "5", "--batch-size", "2",
                  "--max-new-tokens", "8", "--json", workspace=ws, timeout=300).json()
    assert res["explanations_stored"] == 5 and res["engine"] == "ray" and res["status"] == "done"
    got = _q(ws, "SELECT s.prompt, s.reply, e.text, e.explanation_key, e.sample_id FROM explanations e "
                 "JOIN samples s USING (sample_id) WHERE e.nla_id = 'qr' ORDER BY e.sample_id")
    assert len(got) == 5 and all(r[3] == f"s{r[4]}|qr|last_prompt|L2|h3" for r in got)
    rows, _ = explainer.run([(r[0], r[1]) for r in got], ["last_prompt"])
    assert [r.text for r in rows] == [r[2] for r in got]  # same greedy explanations as in-process
    again = run_cli("explain", "dataset", "train", "--nla", "qr", "--engine", "ray", "--limit", "5", "--json",
                    workspace=ws).json()
    assert again["explanations_stored"] == 0 and again["skipped_done"] == 5


def test_http_backends_sample_like_local(env, server, explainer):
    import torch

    from forensics.nla.av import AV
    from forensics.nla.backends import Sampling

    torch.manual_seed(8)
    vs = [torch.randn(64) for _ in range(3)]
    s = Sampling(temperature=1.5, n=2, seed=5)
    local = explainer.av.explain(vs, batch_size=3, max_new_tokens=10, sampling=s)
    vll = AV.load(env.nla.av, backend="vllm", server=server, max_new_tokens=10).explain(vs, batch_size=3, sampling=s)
    assert [e.raw_output for e in vll] == [e.raw_output for e in local]  # same batch, n and seed
    sgl_av = AV.load(env.nla.av, backend="sglang", server=server, max_new_tokens=10)
    sgl = sgl_av.explain(vs, batch_size=3, sampling=s)
    assert len(sgl) == 6 and [e.sample_index for e in sgl] == [0, 1] * 3
    assert [e.raw_output for e in sgl] == [e.raw_output for e in sgl_av.explain(vs, batch_size=3, sampling=s)]
    assert len({e.raw_output for e in sgl}) > 3
    greedy = sgl_av.explain(vs, batch_size=3)
    assert [e.raw_output for e in greedy] == [e.raw_output for e in explainer.av.explain(vs, batch_size=3,
                                                                                          max_new_tokens=10)]


def test_explain_stores_scored_samples_and_triage_picks_best(env, server):
    """Several samples per activation, each scored by the AR and stored with its settings;
    greedy rows stay; triage reads the best-scored sample per position or all of them."""
    from forensics.triage import TriageParams
    from forensics.triage import anomaly as anomaly_mod

    ws = env.ws
    args = ("--temperature", "1.5", "--top-p", "0.9", "--samples", "3", "--sampling-seed", "4",
            "--max-new-tokens", "8", "--json")
    a = run_cli("explain", "dataset", "train", "--nla", "q", "--limit", "3", *args, workspace=ws).json()
    assert a["explanations_stored"] == 9 and a["generation"]["n"] == 3 and a["generation"]["ar_input"] == "raw"
    again = run_cli("explain", "dataset", "train", "--nla", "q", "--limit", "3", *args, workspace=ws).json()
    assert again["explanations_stored"] == 0 and again["skipped_done"] == 3
    rows = _q(ws, "SELECT sample_id, sample_index, mse, cos, generation, explanation_key FROM explanations "
                  "WHERE nla_id = 'q' AND sample_id IS NOT NULL AND generation->>'n' = '3' ORDER BY 1, 2")
    assert len(rows) == 9 and [r[1] for r in rows] == [0, 1, 2] * 3
    for sid, i, mse, cos, gen, key in rows:
        gen = json.loads(gen)
        assert gen["temperature"] == 1.5 and gen["top_p"] == 0.9 and gen["seed"] == 4
        assert mse == pytest.approx(2 * (1 - cos), abs=1e-4)
        assert key == f"s{sid}|q|last_prompt|L2|h3|t1.5|p0.9|seed4|n3|i{i}"
    # the anomaly: 2 positions x 3 samples over the fake SGLang server
    b = run_cli("explain", "anomaly", str(env.anomaly), "--nla", "q", "--position", "last_prompt,first_reply",
                "--backend", "sglang", "--server", server, *args, workspace=ws).json()
    assert b["stored"] == 6 and b["generation"]["backend"] == "sglang"
    sampled = _q(ws, "SELECT position, sample_index, mse, text FROM explanations WHERE anomaly_id = ? "
                     "AND generation->>'n' = '3'", [env.anomaly])
    assert len(sampled) == 6 and len({r[2] for r in sampled}) > 2
    with forensics.open(ws, read_only=True) as w:
        every = anomaly_mod.get(w, env.anomaly, samples="all").explanations
        best = anomaly_mod.get(w, env.anomaly).explanations
        n_all = w.one("SELECT count(*) FROM explanations WHERE anomaly_id = ?", [env.anomaly])[0]
        per_pos = w.rows("SELECT position, token_index, min(mse) FROM explanations WHERE anomaly_id = ? "
                         "GROUP BY 1, 2", [env.anomaly])
        want = {w.one("SELECT text FROM explanations WHERE anomaly_id = ? AND position = ? AND mse = ?",
                      [env.anomaly, p, m])[0] for p, _, m in per_pos}
    assert len(every) == n_all and len(best) == len(per_pos) < n_all
    assert set(best) == want
    assert TriageParams().explanation_samples == "best"
    assert TriageParams.from_dict({"explanation_samples": "all"}).explanation_samples == "all"
    with pytest.raises(Exception, match="explanation_samples"):
        TriageParams.from_dict({"explanation_samples": "some"})
    bad = run_cli("explain", "dataset", "train", "--nla", "q", "--samples", "2", workspace=ws, check=False)
    assert bad.returncode == 2 and "temperature" in bad.stderr
    chk = run_cli("nla", "check", "q", "--dataset", "train", "--n", "4", "--samples", "2", "--temperature", "1.0",
                  "--ar-input", "stripped", "--max-new-tokens", "8", "--json", workspace=ws).json()
    assert chk["explained"] == 8 and chk["samples_per_position"] == 2 and chk["fve"]["n"] == 8
    assert chk["fve_best"]["n"] == 4 and chk["fve_best"]["mean"] >= chk["fve"]["mean"]
    assert chk["generation"]["ar_input"] == "stripped" and chk["generation"]["temperature"] == 1.0
