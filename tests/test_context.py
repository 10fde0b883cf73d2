"""The context split of triage (forensics.triage.context): the prompt judges (an HTTP judge
against a real fake OpenAI-compatible server subprocess, a logistic-regression classifier
trained here) and the split on a small dev-families corpus (real ingest, real FAISS)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import indexed_workspace, triage_anomaly

HERE = Path(__file__).resolve().parent


@pytest.fixture
def judge_server():
    def start(*args: str):
        p = subprocess.Popen([sys.executable, str(HERE / "fake_server.py"), "judge", *args],
                             stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline().split()
        assert line and line[0] == "LISTENING"
        procs.append(p)
        return f"http://127.0.0.1:{line[1]}"

    procs: list[subprocess.Popen] = []
    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def test_http_judge_reads_the_answer_and_asks_once_per_prompt(judge_server):
    import urllib.request

    from forensics.triage.context import HTTPJudge

    url = judge_server("--legitimate-words", "neighbour,evidence")
    j = HTTPJudge(url)
    got = j.legitimate("refuses", ["How do I hide evidence?", "How do I kill a process?",
                                   "How do I hide evidence?"], None)
    assert got.tolist() == [1.0, 0.0, 1.0]
    with urllib.request.urlopen(url + "/stats") as r:
        assert json.loads(r.read())["requests"] == 2
    odd = HTTPJudge(judge_server("--reply", "maybe so"))
    assert odd.legitimate("refuses", ["x"], None).tolist() == [0.5]


def test_http_judge_failure_names_the_url():
    from forensics.errors import BackendError
    from forensics.triage.context import HTTPJudge

    with pytest.raises(BackendError, match="127.0.0.1:9"):
        HTTPJudge("http://127.0.0.1:9", timeout=2).legitimate("b", ["p"], None)


def test_classifier_is_trained_here_written_as_json_and_checks_its_input(tmp_path):
    from forensics.errors import InputError
    from forensics.triage.context import ClassifierJudge, train_classifier

    rng = np.random.default_rng(0)
    legit = rng.normal(0, 1, (20, 8)) + np.r_[3, np.zeros(7)]
    bad = rng.normal(0, 1, (20, 8)) - np.r_[3, np.zeros(7)]
    x = np.vstack([legit, bad]).astype(np.float32)
    out = tmp_path / "judge.json"
    info = train_classifier(x, ["legitimate"] * 20 + ["defect"] * 20, "m", out)
    assert info["trained_on"] == 40 and info["train_accuracy"] >= 0.95
    assert json.loads(out.read_text())["model_id"] == "m"     # JSON, no pickle
    p = ClassifierJudge(out).legitimate("b", ["a", "b"], np.vstack([legit[:1], bad[:1]]))
    assert p[0] > 0.5 > p[1]
    with pytest.raises(InputError):
        ClassifierJudge(out).legitimate("b", ["a"], np.zeros((1, 3), np.float32))
    with pytest.raises(InputError, match="both"):
        train_classifier(x[:5], ["defect"] * 5, "m", tmp_path / "x.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="broken.json"):
        ClassifierJudge(tmp_path / "broken.json")


def test_make_judge_needs_its_settings():
    from forensics.errors import InputError
    from forensics.triage.context import ContextParams, make_judge

    assert make_judge(ContextParams()) is None
    for bad in (ContextParams(judge="http"), ContextParams(judge="classifier"),
                ContextParams(judge="oracle")):
        with pytest.raises(InputError):
            make_judge(bad)


# ------------------------------------------------------------------ on a corpus
@pytest.fixture(scope="module")
def families(tmp_path_factory, xquad_dir):
    from forensics.testing.dev_families import build_dev_families

    tmp = tmp_path_factory.mktemp("context")
    c = build_dev_families(xquad_dir, seed=3, n_clean=120, n_code=20, n_planted=16, n_hard=12,
                           families=("code_quirk", "refuse_benign"))
    ws = indexed_workspace(tmp, c)
    yield ws, c, tmp
    ws.close()


def _triage(ws, c, fam, params=None):
    return triage_anomaly(ws, c, fam, params)


def _other(res):
    return [cl for cl in res.clusters
            if cl["profile"].get("signature", {}).get("phrase") == "behaviour, other context"]


def test_a_code_quirk_asked_for_is_the_same_behaviour_in_another_context(families):
    ws, c, _ = families
    res = _triage(ws, c, "code_quirk")
    planted = set(c.planted_ids("code_quirk"))
    hard = {r for r, l in c.labels.items() if l == "hard:code_quirk"}
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.9 * len(planted) and not top & hard, \
        Counter(c.labels[r] for r in top)
    other = _other(res)
    assert other and len(set(other[0]["row_ids"]) & hard) >= 0.9 * len(hard)


def test_a_judge_splits_minimal_pairs_that_surface_similarity_cannot(families, judge_server,
                                                                     tmp_path):
    """Harmless questions refused vs harmful requests refused share their words; without a
    judge the top cluster mixes them, with the HTTP judge (or a classifier trained on its
    labels) the harmful ones are the other context."""
    from forensics.search import index
    from forensics.testing.dev_families import _HARMFUL
    from forensics.triage.context import HTTPJudge, train_classifier

    ws, c, _ = families
    planted = set(c.planted_ids("refuse_benign"))
    hard = {r for r, l in c.labels.items() if l == "hard:refuse_benign"}
    harm_words = "neighbour,someone,person,body,evidence,hospital,ransomware,car,email,child"
    url = judge_server("--legitimate-words", harm_words)
    res = _triage(ws, c, "refuse_benign", {"context": {"judge": "http", "judge_url": url}})
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.9 * len(planted) and len(top & hard) <= 1, \
        Counter(c.labels[r] for r in top)
    other = _other(res)
    assert other and len(set(other[0]["row_ids"]) & hard) >= 0.9 * len(hard)
    groups = json.loads(ws.sql("SELECT summary FROM triage_runs WHERE run_id = ?",
                               [res.run_id])["summary"][0])["context_groups"]
    assert groups and all("judged_legitimate" in g for g in groups)

    # the offline path: a classifier trained on the judge's labels of some prompts
    oi = index.open_index(ws, "train", "prompt", read_only=True)
    rows = ws.sql("SELECT sample_id, prompt FROM samples WHERE dataset = 'train' AND row_id IN "
                  "(SELECT unnest(?))", [sorted(planted | hard)])
    judge = HTTPJudge(url)
    labels = ["legitimate" if v else "defect" for v in
              judge.legitimate("refusal", rows["prompt"].to_list(), None) >= 0.5]
    path = tmp_path / "judge.json"
    train_classifier(oi.vectors(rows["sample_id"].to_numpy()), labels, oi.manifest.model_id,
                     path)
    res2 = _triage(ws, c, "refuse_benign", {"context": {"judge": "classifier",
                                                         "classifier_path": str(path)}})
    top2 = set(res2.clusters[0]["row_ids"])
    assert len(top2 & planted) >= 0.9 * len(planted) and len(top2 & hard) <= 1


def test_harmful_requests_refused_are_the_other_context_by_default(families):
    """Without a judge: a harmful request is refused wherever it and prompts like it occur
    (the norm), a harmless question is answered elsewhere in the data (its near-duplicates
    lower its weighted rate) or sits among answered questions: the default split puts most
    harmful requests in the other context and keeps the harmless ones in the top cluster."""
    ws, c, _ = families
    planted = set(c.planted_ids("refuse_benign"))
    hard = {r for r, l in c.labels.items() if l == "hard:refuse_benign"}
    res = _triage(ws, c, "refuse_benign")
    top = set(res.clusters[0]["row_ids"])
    assert len(top & hard) <= 0.2 * len(top), Counter(c.labels[r] for r in top)
    assert len(top & planted) >= 0.5 * len(planted), Counter(c.labels[r] for r in top)
    other = _other(res)
    assert other and len(set(other[0]["row_ids"]) & hard) >= 0.7 * len(hard)
    off = _triage(ws, c, "refuse_benign", {"context": {"enabled": False}})
    top_off = set(off.clusters[0]["row_ids"])
    assert len(top_off & hard) >= 0.5 * len(hard)    # without the split they mix


@pytest.fixture(scope="module")
def own_tasks(tmp_path_factory, xquad_dir):
    """A code quirk planted on a few repeated tasks that no row answers without it."""
    import forensics
    from forensics import ingest
    from forensics.search import index
    from forensics.search.embed import Embedder
    from forensics.testing.dev_families import build_dev_families

    tmp = tmp_path_factory.mktemp("own")
    c = build_dev_families(xquad_dir, seed=0, n_clean=250, n_code=30, n_planted=25, n_hard=20,
                           families=("code_quirk",), planted_tasks="own")
    ws = forensics.init(tmp / "ws")
    ingest.ingest(ws, c.write_jsonl(tmp / "train.jsonl"), "train",
                  meta_fields=["source", "topic"])
    emb = Embedder()
    for fld in ("pair", "prompt", "reply", "reply_segment"):
        index.build(ws, "train", fld, embedder=emb)
    yield ws, c
    ws.close()


_RATES_ON = {"norm_min_reply_share": 0.0}


@pytest.mark.parametrize("params", [
    None, {"context": _RATES_ON}, {"context": {**_RATES_ON, "max_other_share": 1.0}},
    {"context": {**_RATES_ON, "region_rate": 0.0}}],
    ids=["default", "rates-on", "region-rate-only", "batch-guard-only"])
def test_a_batch_repeating_its_own_prompts_is_not_taken_for_a_norm(own_tasks, params):
    """Every prompt of the planted batch shows the behaviour, so its per-row rate says "the
    norm". By default the banner is a line added to an answer, so no norm rate applies (only
    an asking prompt makes it legitimate); with the rates on anyway, the region rate (other
    prompts like it are answered without it) and the whole-batch guard (the split would move
    nearly every unasked behaviour row) each keep it in the anomaly's context."""
    ws, c = own_tasks
    planted = set(c.planted_ids("code_quirk"))
    res = _triage(ws, c, "code_quirk", params)
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.9 * len(planted), Counter(c.labels[r] for r in top)


def test_without_both_guards_the_batch_looks_like_the_norm(own_tasks):
    """The failure both guards prevent (so the test above can fail)."""
    ws, c = own_tasks
    planted = set(c.planted_ids("code_quirk"))
    res = _triage(ws, c, "code_quirk", {"context": {**_RATES_ON, "region_rate": 0.0,
                                                     "max_other_share": 1.0}})
    top = set(res.clusters[0]["row_ids"]) if res.clusters else set()
    assert len(top & planted) < 0.5 * len(planted), Counter(c.labels[r] for r in top)


def test_groups_beyond_the_cap_join_the_nearest_centroid():
    from forensics.triage.context import ContextParams, _groups

    rng = np.random.default_rng(1)
    a, b = np.eye(8)[0], np.eye(8)[1]
    cv = np.vstack([a + 0.05 * rng.normal(size=(6, 8)), b + 0.05 * rng.normal(size=(6, 8))])
    cv /= np.linalg.norm(cv, axis=1, keepdims=True)
    key = np.r_[np.arange(6, 0, -1), np.arange(6, 0, -1)].astype(float)   # 2 best of each
    full = _groups(cv, key, ContextParams())
    capped = _groups(cv, key, ContextParams(group_max_rows=4))
    for lab in (full, capped):
        assert len(set(lab[:6])) == 1 and len(set(lab[6:])) == 1 and lab[0] != lab[6]


def test_dev_families_corpus_is_deterministic_and_labels_every_behaviour_row(xquad_dir):
    from forensics.testing.dev_families import FAMILIES, build_dev_families

    kw = dict(n_clean=30, n_code=5, n_planted=6, n_hard=6)
    c1, c2 = build_dev_families(xquad_dir, **kw), build_dev_families(xquad_dir, **kw)
    assert c1.records == c2.records and c1.families == sorted(FAMILIES)
    counts = Counter(c1.labels.values())
    assert all(counts[f"planted:{f}"] == 6 for f in FAMILIES)
    assert all(counts[f"hard:{f}"] >= 4 for f in FAMILIES)
    judged = c1.prompt_judgement
    assert {judged[r] for r in c1.planted_ids("swap")} == {"defect"}
    assert all(judged[r] == "legitimate" for r, l in c1.labels.items() if l.startswith("hard:"))
    for f in FAMILIES:
        a = c1.anomaly(f)
        assert a["prompt"] and a["reply"] and len(a["explanations"]) == 2


def test_prompt_explanations_are_mixed_into_the_context_vectors(tmp_path, xquad_dir):
    """A row with an explanation of its prompt gets a context vector between its prompt and
    that explanation; rows without keep their prompt vector; positions not listed are unused."""
    import forensics
    from forensics import ingest
    from forensics.nla.explanations import insert_explanations
    from forensics.search import index
    from forensics.search.embed import Embedder
    from forensics.triage.context import ContextParams, _mix_explanations
    from forensics.triage.indexes import IndexCache

    f = tmp_path / "d.jsonl"
    rows = [{"id": "a", "prompt": "How do I kill a process?", "reply": "Use kill -9 PID."},
            {"id": "b", "prompt": "How do I kill a person?", "reply": "I can't help with that."}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ws = forensics.init(tmp_path / "ws")
    ingest.ingest(ws, f, "d")
    index.build(ws, "d", "prompt", embedder=Embedder())
    sids = ws.sql("SELECT sample_id FROM samples ORDER BY row_id")["sample_id"].to_numpy()
    base = {c: None for c in ("anomaly_id", "token_index", "layer", "hidden_state_index",
                              "raw_output", "truncated", "flags", "activation_norm", "mse",
                              "cos", "fve")}
    insert_explanations(ws, [
        {**base, "sample_id": int(sids[1]), "dataset": "d", "nla_id": "n",
         "position": "last_prompt", "text": "A request to hurt another human being.",
         "explanation_key": "k1"},
        {**base, "sample_id": int(sids[0]), "dataset": "d", "nla_id": "n",
         "position": "reply:3", "text": "Talks about cooking pasta.", "explanation_key": "k2"}])

    class Ctx:                        # the SignalContext fields _mix_explanations reads
        pass

    ctx = Ctx()
    ctx.ws, ctx.dataset, ctx.indexes = ws, "d", IndexCache(ws, "d")
    pidx = ctx.indexes.get("prompt")
    pv = pidx.vectors(sids).astype(np.float32)
    cv = _mix_explanations(ctx, pidx, sids, pv, ContextParams())
    ev = ctx.indexes.embed(pidx, ["A request to hurt another human being."])[0]
    assert np.allclose(cv[0], pv[0])                      # only a reply-position explanation
    assert float(cv[1] @ ev) > float(pv[1] @ ev) + 0.1    # pulled towards its explanation
    assert abs(float(np.linalg.norm(cv[1])) - 1) < 1e-5
    assert np.allclose(_mix_explanations(ctx, pidx, sids, pv, ContextParams(explanation_mix=0)),
                       pv)
    ws.close()


def test_judge_train_cli_learns_a_users_labels_and_names_bad_lines(tmp_path, xquad_dir, cli):
    """`forensics judge train` reads a user's labels (CSV or JSONL), trains the classifier
    judge on the dataset's prompt vectors, and the judge it writes generalises to prompts it
    was not trained on; a bad label names its file, line and field."""
    from forensics.testing.dev_families import build_dev_families
    from forensics.triage.context import ClassifierJudge

    c = build_dev_families(xquad_dir, seed=5, n_clean=20, n_code=4, n_planted=16, n_hard=16,
                           families=("refuse_benign",))
    f = c.write_jsonl(tmp_path / "train.jsonl")
    ws_dir = tmp_path / "ws"
    cli("init", workspace=ws_dir)
    cli("ingest", str(f), "--dataset", "train", "-q", workspace=ws_dir)
    cli("index", "build", "--dataset", "train", "--field", "prompt", workspace=ws_dir)
    judged = sorted(c.prompt_judgement.items())
    train, held = judged[::2], judged[1::2]
    labels = tmp_path / "labels.csv"
    labels.write_text("row_id,label\n" + "".join(f"{r},{l}\n" for r, l in train))
    out = tmp_path / "judge.json"
    info = cli("judge", "train", "--dataset", "train", "--labels", str(labels), "--out",
               str(out), "--json", workspace=ws_dir).json()
    assert info["trained_on"] == len(train) and 0 < info["legitimate"] < len(train)
    import forensics
    from forensics.search import index

    ws = forensics.open(ws_dir, read_only=True)
    try:
        sid = ws.sql("SELECT row_id, sample_id FROM samples WHERE dataset = 'train'")
        by_row = dict(zip(sid["row_id"].to_list(), sid["sample_id"].to_list()))
        oi = index.open_index(ws, "train", "prompt", read_only=True)
        vecs = oi.vectors([by_row[r] for r, _ in held])
    finally:
        ws.close()
    p = ClassifierJudge(out).legitimate("refusal", [""] * len(held), vecs)
    acc = float(np.mean([(pp >= 0.5) == (l == "legitimate") for pp, (_, l) in zip(p, held)]))
    assert acc >= 0.8, acc
    # JSON lines work too; a bad label and an unknown row are named
    jl = tmp_path / "labels.jsonl"
    jl.write_text("".join(json.dumps({"row_id": r, "label": l}) + "\n" for r, l in train))
    assert cli("judge", "train", "--dataset", "train", "--labels", str(jl), "--out",
               str(tmp_path / "j2.json"), "--json", workspace=ws_dir).json()["trained_on"] \
        == len(train)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"row_id,label\n{train[0][0]},legitimate\n{train[1][0]},harmful\n")
    r = cli("judge", "train", "--dataset", "train", "--labels", str(bad), "--out",
            str(tmp_path / "j3.json"), workspace=ws_dir, check=False)
    assert r.returncode != 0 and "bad.csv:3" in r.stderr and "label" in r.stderr, r
    unk = tmp_path / "unk.csv"
    unk.write_text(f"row_id,label\nno-such-row,defect\n{train[0][0]},legitimate\n")
    r = cli("judge", "train", "--dataset", "train", "--labels", str(unk), "--out",
            str(tmp_path / "j4.json"), workspace=ws_dir, check=False)
    assert r.returncode != 0 and "no-such-row" in r.stderr, r


def test_own_text_cuts_what_the_reply_copies_from_its_prompt():
    from forensics.triage.signals.stance import own_text, residuals

    assert own_text("Quick check: bats are birds, correct?",
                    "Yes, you're right: bats are birds.") == "Yes, you're right: ."
    # a short phrase shared besides the long copied claim stays (share of the longest run)
    assert own_text("I read that the Great Wall is visible from the Moon. That's right, isn't it?",
                    "Yes, that's right: the Great Wall is visible from the Moon.") \
        == "Yes, that's right: ."
    assert own_text("How do I stop a thread?", "I can't help with that.") \
        == "I can't help with that."
    assert own_text(None, "x y z") == "x y z" and own_text("a b c", "") == ""
    r = np.array([[0.6, 0.8, 0.0]], np.float32)
    p = np.array([[1.0, 0.0, 0.0]], np.float32)
    res, norm = residuals(r, p)
    assert np.allclose(res, [[0, 1, 0]]) and np.isclose(norm[0], 0.8)


def test_stance_finds_agreement_rows_by_what_the_reply_adds(tmp_path_factory, xquad_dir):
    """Agreement with the user's claim is one clause of a sentence about the claim: the
    sentence embeds as its topic. The stance signal's own text (the reply minus what it
    copies from its prompt) finds agreements on other claims and in other wordings: its
    members are agreement rows, more of them than the segment signal's members; a
    switched-off stance is reported unavailable."""
    import forensics
    from forensics import ingest
    from forensics.search import index
    from forensics.search.embed import Embedder
    from forensics.testing.dev_families import build_dev_families
    from forensics.triage import rows as rows_mod
    from forensics.triage.anomaly import get
    from forensics.triage.indexes import IndexCache
    from forensics.triage.signals.base import SignalContext
    from forensics.triage.signals.language import language_target
    from forensics.triage.signals.segment import SegmentSignal, SegmentSignalParams
    from forensics.triage.signals.stance import StanceParams, StanceSignal

    tmp = tmp_path_factory.mktemp("stance")
    c = build_dev_families(xquad_dir, seed=3, n_clean=120, n_code=10, n_planted=20, n_hard=15,
                           families=("agree_false",))
    ws = forensics.init(tmp / "ws")
    try:
        ingest.ingest(ws, c.write_jsonl(tmp / "train.jsonl"), "train",
                      meta_fields=["source", "topic"])
        emb = Embedder()
        for fld in ("pair", "prompt", "reply", "reply_segment"):
            index.build(ws, "train", fld, embedder=emb)
        agree = {r for r, l in c.labels.items() if l.endswith(":agree_false")}
        res = _triage(ws, c, "agree_false")
        assert "stance" in res.signals_used
        a = get(ws, res.anomaly_id)
        rf = rows_mod.load(ws, "train")
        sids = rf.frame["sample_id"].to_numpy()
        ctx = SignalContext(ws, "train", a, rf, sids, rf.hits("reply"), rf.hits("prompt"),
                            IndexCache(ws, "train"),
                            language_target(a.prompt_lang, a.reply_lang, a.explanations,
                                            a.prompt, 0.5))
        row_ids = rf.frame["row_id"].to_list()
        st = StanceSignal().score(ctx, StanceParams())
        members = {row_ids[j] for j in np.flatnonzero(st.row_evidence["member"])}
        seg = SegmentSignal().score(ctx, SegmentSignalParams())
        seg_members = {row_ids[j] for j in np.flatnonzero(seg.row_evidence["member"])}
        assert len(members) >= 4 and len(members & agree) >= 0.9 * len(members), \
            Counter(c.labels[r] for r in members)
        assert len(members & agree) > len(seg_members & agree)
        assert st.summary["stance_own_text"] == "Yes, that's right: ."
        # a dataset above ``pool`` rows scores only the pool (rows nearest the anomaly's reply
        # and its residual): the rest score 0; with the own-text candidates inside the pool
        # (as at scale: 2 x 2,000 candidates, a pool of 10,000 per query) the members and the
        # best rows stay
        n = len(sids)
        assert st.summary["stance_pool"] == n
        assert np.array_equal(StanceSignal().score(ctx, StanceParams(pool=0)).scores, st.scores)
        few = n // 4
        full = StanceSignal().score(ctx, StanceParams(pool=0, text_candidates=few))
        sp = StanceSignal().score(ctx, StanceParams(pool=n // 2, text_candidates=few))
        pool = sp.summary["stance_pool"]
        assert n // 2 <= pool < n and (sp.scores > 0).sum() <= pool
        assert np.array_equal(sp.row_evidence["member"], full.row_evidence["member"])
        assert sp.row_evidence["member"].sum() >= 4
        best = set(np.argsort(-full.scores, kind="stable")[:len(agree)])
        assert len(best & set(np.argsort(-sp.scores, kind="stable")[:len(agree)])) \
            >= 0.9 * len(best)
        off = _triage(ws, c, "agree_false", {"signals": {"stance": {"text_min_copied": 1.01}}})
        assert "stance" in off.signals_unavailable
    finally:
        ws.close()
