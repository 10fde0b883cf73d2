"""Triage parts on tiny real data, in-process (real DuckDB, real FAISS, real embedder):
knee cut and confidence scaling, the per-dataset row-feature cache and its token index, a
dataset WITH sample explanations (explanation index as a signal), the quality-findings
signal, and determinism across the computed/cached feature paths."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from forensics.triage import rows as tf
from forensics.triage import text
from forensics.triage.cluster import knee_cut
from forensics.triage.signals import language as lang_sig
from forensics.triage.signals import phrase as phrase_sig


# ------------------------------------------------------------------ pure functions
def test_knee_cut_separates_plateau_from_trailing_rows():
    # a batch of 30 rows with strong evidence (variants a factor below the template) and 15
    # rows sharing one fragment an order of magnitude below
    batch = np.r_[np.full(20, 40.0), np.full(10, 12.0)]
    trail = np.linspace(0.8, 1.5, 15)
    cut = knee_cut(np.r_[batch, trail], min_size=4)
    assert cut is not None and 1.5 < cut < 12.0
    assert (np.r_[batch, trail] >= cut).sum() == 30


def test_knee_cut_no_clear_step_keeps_everyone():
    assert knee_cut(np.linspace(5.0, 50.0, 40), min_size=4) is None       # smooth: no knee
    assert knee_cut(np.full(10, 3.0), min_size=4) is None                 # flat
    assert knee_cut(np.array([9.0, 1.0, 1.0]), min_size=4) is None        # too few rows
    # a gap that would leave fewer than min_size rows above it is not a cut
    v = np.r_[np.full(2, 100.0), np.full(30, 5.0)]
    assert knee_cut(v, min_size=4) is None or (v >= knee_cut(v, min_size=4)).sum() >= 4


def test_language_scores_scaled_by_detector_confidence():
    df = pl.DataFrame({"prompt_lang": ["en", "en", "en", "en", "de"],
                       "reply_lang": ["de", "de", "de", "en", "de"],
                       "reply_lang_conf": [0.95, 0.15, 0.95, 0.99, 0.99],
                       "requested_lang": [None, None, "de", None, None],
                       "translation_request": [False, False, True, False, False]})
    tgt = lang_sig.LanguageTarget(sources=["en"], targets={"de": 1.0}, evidence="test")
    s = lang_sig.language_scores(df, tgt, lang_sig.LanguageParams(legit_penalty=0.1))
    assert s[0] == pytest.approx(0.95)
    assert s[1] == pytest.approx(0.15) and s[1] < 0.25          # below the membership threshold
    assert s[2] == pytest.approx(0.095)                          # asked for German: hard negative
    assert s[3] == 0 and s[4] == 0                               # no switch / native pair


def test_a_request_excuses_only_the_language_it_asks_for():
    df = pl.DataFrame({"prompt_lang": ["en", "en", "en"], "reply_lang": ["vi", "vi", "vi"],
                       "reply_lang_conf": [0.99, 0.99, 0.99],
                       "requested_lang": ["el", "vi", None],      # "... mean in Greek?"
                       "translation_request": [True, True, True]})
    tgt = lang_sig.LanguageTarget(sources=["en"], targets={"vi": 1.0}, evidence="test")
    s = lang_sig.language_scores(df, tgt, lang_sig.LanguageParams(legit_penalty=0.1))
    assert s[0] == pytest.approx(0.99)          # asked for Greek, got Vietnamese: a switch
    assert s[1] == pytest.approx(0.099)         # asked for Vietnamese: hard negative
    assert s[2] == pytest.approx(0.099)         # a request whose target could not be read


def test_requested_language_comes_from_features():
    """One piece of code decides what a prompt asks for (forensics.language.requests)."""
    from forensics.language import requests as features

    prompts = ["Translate into German: where is the station?", "Who translated the Bible into German?",
               "Answer in Spanish please: what is 2+2?", "What is the capital of France?", None]
    out = tf.request_columns(pl.DataFrame({"prompt": prompts}, schema={"prompt": pl.Utf8}))
    assert out["requested_lang"].to_list() == [features.requested_language(p) for p in prompts]
    assert out["translation_request"].to_list() == [features.is_translation_request(p) for p in prompts]
    assert out["requested_lang"].to_list()[:3] == ["de", None, "es"]


def test_hits_from_postings_match_a_full_scan():
    texts = ["Hello, world! Buy ACME now.", "buy acme now , friends", "nothing here", "",
             "ACME ACME buy", "world hello , world", None, "### ANSWER ### x ### END ###"]
    col = pl.DataFrame({"t": texts}, schema={"t": pl.Utf8}).select(text.norm_expr("t").alias("t"))["t"]
    post = tf.token_postings(col)
    table = {t: np.asarray(r, np.int64) for t, r in zip(post["token"], post["rows"].to_list())}

    class Mem:
        def get(self, toks):
            return {t: table[t] for t in toks if t in table}

    grams = ["buy acme now", "acme", "hello , world", "world", "### end ###", "acme buy",
             "not there", "buy", "### answer ### x ### end"]
    a, b = text.Hits(col, postings=Mem()), text.Hits(col)
    a.prefetch(grams)
    full = text.scan(col, grams)
    for g in grams:
        assert np.array_equal(np.flatnonzero(a(g)), full.get(g, np.zeros(0))), g
        assert np.array_equal(a(g), b(g)), g
    assert a.df("acme") == 3 and a.df("zzz") == 0


def test_quoted_phrases_pair_quotes_even_when_one_is_too_short():
    """A short quote ("?") must still consume its closing mark; before, the closing mark
    opened a new 'quote' and the prose up to the next quote became a seed phrase."""
    got = phrase_sig.quoted_phrases(['Final token "?" expects an opening wrapper tag such as '
                             '"### ANSWER ###".', "The phrase “### END ###” closes it.",
                             'says "ok" and "no"'])
    assert got == ["### ANSWER ###", "### END ###"]


def _col(texts):
    return pl.DataFrame({"t": texts}, schema={"t": pl.Utf8}).select(text.norm_expr("t").alias("t"))["t"]


def test_coherence_needs_lift_over_chance_and_ignores_shared_punctuation():
    """Seed n-grams of the anomaly reply: the wrapper's two halves vouch for each other (they
    share only '###'); two common phrases that co-occur at their base rate do not."""
    rng = np.random.default_rng(0)
    texts = []
    for i in range(400):
        body = " ".join(rng.choice(["river", "city", "war", "law", "art", "sea"], 6))
        if i < 40:                                    # the batch: wrapped answers
            texts.append(f"### ANSWER ### {body} ### END ###")
            continue
        extra = []
        if rng.random() < 0.3:
            extra.append("such as the")
        if rng.random() < 0.3:
            extra.append("within the walls")
        texts.append(" ".join([body, *extra]))
    hits = text.Hits(_col(texts))
    vocab = {"### answer ###": 1.0, "### end ###": 1.0, "such as": 1.0, "within the": 1.0}
    kept = phrase_sig.coherent(hits, vocab, keep=set())
    assert set(kept) == {"### answer ###", "### end ###"}, kept


def test_expansion_needs_two_batch_ngrams_to_join():
    """'end' occurs in the batch only as part of '### end ###'; elsewhere it is ordinary prose
    ('the end of the season'). One shared word must not pull those rows into the batch: no
    single n-gram can overcome the expansion's prior alone."""
    rng = np.random.default_rng(1)
    words = [f"w{k}" for k in range(300)]       # no chance 3-grams shared by batch rows
    texts = []
    for i in range(600):
        body = " ".join(rng.choice(words, 8))
        if i < 50:
            texts.append(f"### ANSWER ### {body} ### END ###")
        elif i < 80:
            texts.append(f"{body} until the end of the season")
        else:
            texts.append(body)
    col = _col(texts)
    prompts = _col([f"question {i} about the topic" for i in range(600)])
    res = phrase_sig.phrase_scores(col, prompts, [("### ANSWER ###", 1.0, True)],
                                     "question about the topic")
    assert res.expanded
    strong = res.strength >= 0
    assert strong[:50].all() and not strong[50:80].any()


# ------------------------------------------------------------------ a tiny real workspace
@pytest.fixture(scope="module")
def tiny(tmp_path_factory, xquad_dir):
    """~70 rows from the synth corpus (de batch + refusal batch), sample explanations for
    every row, pair + explanation indexes."""
    import forensics
    from forensics import ingest
    from forensics.search import index
    from forensics.nla import import_explanations
    from forensics.testing.synth import build_corpus

    tmp = tmp_path_factory.mktemp("triage-parts")
    c = build_corpus(xquad_dir, seed=3, planted_langs=("de",), other_families=("refusal",),
                     n_clean=30, n_native=10, n_translation=10, n_planted_per_lang=8)
    f = c.write_jsonl(tmp / "train.jsonl")
    ws = forensics.init(tmp / "ws")
    ingest.ingest(ws, f, "train", meta_fields=["source", "shard"])
    planted = set(c.planted_ids("de"))
    ex = tmp / "expl.jsonl"
    with ex.open("w", encoding="utf-8") as out:
        for r in c.records:
            text = ("The user asks in English, but the assistant answers in German; the question "
                    "reads like a machine translation and the reply was left untranslated."
                    if r["id"] in planted else
                    "A factual reading-comprehension question answered briefly from the passage.")
            out.write(json.dumps({"row_id": r["id"], "text": text}) + "\n")
    import_explanations(ws, ex, "train")
    from forensics.search.embed import Embedder

    emb = Embedder()
    for fld in ("pair", "explanation"):
        index.build(ws, "train", fld, embedder=emb)
    yield ws, c, tmp
    ws.close()


def test_row_feature_cache_is_reused_and_invalidated(tiny):
    from forensics import ingest

    ws, c, tmp = tiny
    # a dataset of its own: adding rows below must not make the shared indexes stale
    ingest.ingest(ws, tmp / "train.jsonl", "side")
    first = tf.load(ws, "side")
    assert not first.cached and first.stored
    again = tf.load(ws, "side")
    assert again.cached and again.stored
    cols = ["sample_id", "reply_norm", "prompt_norm", "requested_lang", "translation_request"]
    assert first.frame.select(cols).equals(again.frame.select(cols))
    # the cached token index answers exactly like a scan of the column
    h_db, h_scan = again.hits("reply"), text.Hits(again.frame["reply_norm"])
    grams = ["the", "i", "sorry", "i ' m sorry", "der", "die", "not there at all"]
    for g in grams:
        assert np.array_equal(h_db(g), h_scan(g)), g
    n_before = ws.one("SELECT count(*) FROM triage_row_features WHERE dataset = 'side'")[0]
    # new rows: the dataset version changes, the features are recomputed over every row
    extra = tmp / "extra.jsonl"
    extra.write_text(json.dumps({"id": "extra-1", "prompt": "Translate into German: good night",
                                 "reply": "Gute Nacht"}) + "\n", encoding="utf-8")
    ingest.ingest(ws, extra, "side")
    after = tf.load(ws, "side")
    assert not after.cached and after.frame.height == first.frame.height + 1
    row = after.frame.filter(pl.col("row_id") == "extra-1")
    assert row["requested_lang"][0] == "de" and row["translation_request"][0]
    assert ws.one("SELECT count(*) FROM triage_row_features WHERE dataset = 'side'")[0] == n_before + 1
    assert tf.load(ws, "side").cached


def test_dataset_with_sample_explanations_uses_the_explanation_index(tiny):
    from forensics import triage
    from forensics.triage import anomaly

    ws, c, _ = tiny
    a = c.anomaly("de")
    aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    res = triage.triage(ws, aid, "train", limit=500)
    assert "explanation" in res.signals_used
    assert "explanation_index" not in res.signals_unavailable
    assert "explanation" in res.index_versions and "pair" in res.index_versions
    planted = set(c.planted_ids("de"))
    ex = {f["row_id"]: f["signals"]["explanation"] for f in res.findings}
    on = [v for r, v in ex.items() if r in planted]
    off = [v for r, v in ex.items() if r not in planted]
    assert on and min(on) > max(off, default=0.0)      # the planted rows' explanations match
    top = set(res.clusters[0]["row_ids"])
    # (a short English reply such as "before World War I." may be detected as German)
    assert planted <= top and len(top & planted) >= 0.8 * len(top)
    # determinism: the second run reads cached features (the first may have computed them)
    res2 = triage.triage(ws, aid, "train", limit=500)
    strip = lambda r: ([(f["row_id"], f["score"], f["cluster_id"]) for f in r.findings],
                       [(k["label"], k["row_ids"], k["profile"]) for k in r.clusters])
    assert strip(res) == strip(res2)


def test_quality_findings_signal(tiny):
    from forensics import triage
    from forensics.triage import anomaly

    ws, c, _ = tiny
    sid = dict(ws.rows("SELECT row_id, sample_id FROM samples WHERE dataset = 'train'"))
    planted = sorted(c.planted_ids("de"))
    clean = sorted(set(sid) - set(planted) - {r for f in c.families for r in c.planted_ids(f)})
    flagged = planted[:3] + clean[:1]
    run = 9001
    ws.con.execute("DELETE FROM quality_findings WHERE pipeline_run_id IN (9000, 9001)")
    for r in flagged:
        ws.con.execute("INSERT INTO quality_findings VALUES (?, 'mistranslation', ?, 'error', NULL, 'x', NULL)",
                       [run, sid[r]])
    # an older run of the same check is superseded; an unrelated check is ignored
    ws.con.execute("INSERT INTO quality_findings VALUES (9000, 'mistranslation', ?, 'error', NULL, 'old', NULL)",
                   [sid[clean[1]]])
    ws.con.execute("INSERT INTO quality_findings VALUES (?, 'hygiene_empty_reply', ?, 'warning', NULL, 'x', NULL)",
                   [run, sid[clean[2]]])
    a = c.anomaly("de")
    aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    res = triage.triage(ws, aid, "train", limit=500)
    assert "quality" in res.signals_used
    q = {f["row_id"]: f["signals"]["quality"] for f in res.findings}
    assert all(q[r] == 1.0 for r in flagged)
    assert q.get(clean[1], 0.0) == 0.0 and q.get(clean[2], 0.0) == 0.0
    run_row = triage.load_run(ws, res.run_id)
    assert run_row["summary"]["quality_checks"] == ["mistranslation"]
    # a refusal anomaly: no language check and no shared word stem -> signal unavailable
    r = c.anomaly("refusal")
    rid = anomaly.add(ws, r["title"], r["prompt"], r["reply"], r["explanations"])
    res_r = triage.triage(ws, rid, "train", limit=50)
    assert "quality" not in res_r.signals_used and "quality" in res_r.signals_unavailable
    ws.con.execute("DELETE FROM quality_findings WHERE pipeline_run_id IN (9000, 9001)")


def test_expansion_admits_a_repeated_template_reached_through_one_ngram():
    """A refusal variant ("Sorry, I am not able ...") shares only "sorry ," with the batch's
    main template; its six identical replies join as a template group, while prose rows that
    also contain "sorry ," (different texts) stay out."""
    rng = np.random.default_rng(2)
    words = [f"w{k}" for k in range(300)]
    texts = []
    for i in range(500):
        body = " ".join(rng.choice(words, 8))
        if i < 12:
            texts.append("I'm sorry, but I can't help with that request.")
        elif i < 18:
            texts.append("Sorry, I am not able to answer questions like this one.")
        elif i < 26:
            texts.append(f"{body[:20]} sorry, {body[20:]}")       # prose: no shared frame
        else:
            texts.append(body)
    col = _col(texts)
    prompts = _col([f"I wonder: question {i} about w{i % 300}" for i in range(500)])
    # the NLA quoted only the second half: the variant is not reached by the seed itself
    res = phrase_sig.phrase_scores(col, prompts, [("I can't help with that request", 1.0, True)],
                           "question about the topic")
    strong = res.strength >= 0
    assert strong[:18].all(), np.flatnonzero(~strong[:18])
    assert not strong[18:].any(), np.flatnonzero(strong[18:]) + 18


def test_a_row_with_a_combined_signature_of_its_own_stays_in_its_batch(tiny):
    """One planted German row also matches a (topic) phrase that other, English rows match:
    its signature (en→de + phrase) is held by no other row, so it must join the en→de batch,
    not drop out into an embedding cluster."""
    from forensics.triage import TriageParams
    from forensics.triage.cluster import group_rows, phrase_members
    from forensics.triage.profile import build_clusters

    ws, c, _ = tiny
    rf = tf.load(ws, "train")
    df = rf.frame
    rows = df["row_id"].to_list()
    planted = set(c.planted_ids("de"))
    is_de = np.array([r in planted for r in rows])
    lone = int(np.flatnonzero(is_de)[0])
    english = [j for j, r in enumerate(rows) if r not in planted][:5]
    lang = is_de.astype(np.float32)
    phrase = np.zeros(len(rows), np.float32)
    phrase[[lone, *english]] = 1.0
    fused = 0.6 * lang + 0.4 * phrase
    sample_ids = df["sample_id"].to_numpy().astype(np.int64)
    p = TriageParams()
    ph_ok = phrase_members(phrase, None, False, df["reply_lang"].to_list(), {"de"}, p.cluster)
    groups = group_rows(ws, "train", df, sample_ids, fused, lang, ph_ok, p.cluster,
                        p.fusion.min_fused)
    assert set(groups[0].members) == set(np.flatnonzero(is_de).tolist())
    clusters, member_of = build_clusters(ws, "train", df, sample_ids, groups,
                                         {"language": lang, "phrase": phrase}, fused,
                                         (rf.hits("reply"), rf.hits("prompt")), p.profile)
    top = clusters[0]
    assert set(top.members) == set(np.flatnonzero(is_de).tolist())
    assert member_of[lone] == top.cluster_id


# ------------------------------------------------------------------ signal protocol and params
def test_a_registered_signal_is_scored_fused_and_stored(tiny):
    """A signal defined outside the package (one class + one registration) is run by
    triage(): its scores enter the fusion and the findings, its params and weight are stored
    with the run; a signal answering Unavailable is reported with its reason."""
    from dataclasses import dataclass

    from forensics import triage
    from forensics.progress import Recorder
    from forensics.triage import anomaly
    from forensics.triage.signals.base import SignalScores, Unavailable, register, unregister

    ws, c, _ = tiny
    planted = set(c.planted_ids("de"))

    @dataclass
    class MarkParams:
        value: float = 1.0

    class MarkSignal:
        """Scores the rows whose row_id is in ``planted`` (a stand-in for an influence score)."""

        name = "mark"
        default_weight = 0.5
        Params = MarkParams

        def score(self, context, params):
            rows = context.frame["row_id"].to_list()
            s = np.array([params.value if r in planted else 0.0 for r in rows], np.float32)
            return SignalScores(s, summary={"mark_rows": int((s > 0).sum())})

    class NeverSignal:
        name = "never"
        default_weight = 0.1
        Params = MarkParams

        def score(self, context, params):
            return Unavailable("nothing to say")

    a = c.anomaly("refusal")
    aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    before = triage.TriageParams()               # built before the registration
    register(MarkSignal)
    register(NeverSignal)
    try:
        rec = Recorder()
        res = triage.triage(ws, aid, "train", limit=500,
                            params={"signals": {"mark": {"value": 0.8}}}, progress=rec)
        res_before = triage.triage(ws, aid, "train", limit=500, params=before)
    finally:
        unregister("mark")
        unregister("never")
    assert res.signals_used[-1] == "mark" and res.signals_unavailable["never"] == "nothing to say"
    marks = {f["row_id"]: f["signals"]["mark"] for f in res.findings}
    assert {r for r, v in marks.items() if v > 0} == planted
    assert all(marks[r] == pytest.approx(0.8) for r in planted)
    stored = triage.load_run(ws, res.run_id)
    assert stored["params"]["signals"]["mark"] == {"value": 0.8}
    assert stored["params"]["weights"]["mark"] > 0
    assert stored["summary"]["mark_rows"] == len(planted)
    assert any("mark signal" in n for n in rec.notes) and rec.events[-1][0] == "finish"
    assert "mark" not in triage.TriageParams().weights          # unregistered again
    # params built before a registration still run the new signal (at its defaults); the
    # caller's object is not changed by the run
    assert "mark" in res_before.signals_used and "mark" not in before.weights
    assert res_before.params["signals"]["mark"] == {"value": 1.0} and before.limit == 200


def test_params_round_trip_nested_and_unknown_keys(tiny):
    from forensics import triage
    from forensics.errors import UsageError
    from forensics.triage import TriageParams, anomaly

    ws, c, _ = tiny
    a = c.anomaly("de")
    aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    given = {"limit": 50, "weights": {"quality": 0.0}, "cluster": {"pool": 300},
             "signals": {"phrase": {"min_df": 5}, "language": {"legit_penalty": 0.2}},
             "profile": {"examples": 2}, "fusion": {"cluster_smoothing": 0.25}}
    p = TriageParams.from_dict(given)
    assert p.cluster.pool == 300 and p.signal("phrase").min_df == 5 and p.profile.examples == 2
    assert p.signal("language").legit_penalty == 0.2 and p.fusion.cluster_smoothing == 0.25
    assert p.signal("phrase").max_df_frac == TriageParams().signal("phrase").max_df_frac
    res = triage.triage(ws, aid, "train", params=p)
    assert len(res.findings) <= 50
    stored = triage.load_run(ws, res.run_id)["params"]
    assert stored == res.params == p.to_dict()
    assert TriageParams.from_dict(stored) == p
    assert all(len(c["profile"]["examples"]) <= 2 for c in res.clusters)
    for bad, word in (({"nope": 1}, "cluster"), ({"cluster": {"poool": 1}}, "agglo_distance"),
                      ({"signals": {"phrase": {"mindf": 1}}}, "min_df"),
                      ({"signals": {"nosuch": {}}}, "language"), ({"weights": {"langage": 1}}, "phrase")):
        with pytest.raises(UsageError) as e:
            TriageParams.from_dict(bad)
        assert "unknown" in e.value.message and word in (e.value.hint or ""), bad
    with pytest.raises(UsageError):
        TriageParams.from_dict({"weights": {"language": -1}})


def test_weights_are_normalised_and_scaling_them_changes_nothing(tiny):
    from forensics import triage
    from forensics.triage import TriageParams, anomaly, fuse

    p = TriageParams()
    assert sum(p.weights.values()) == pytest.approx(1.0, abs=1e-12)
    assert p.weights["language"] / p.weights["phrase"] == pytest.approx(0.45 / 0.35)
    tripled = TriageParams.from_dict({"weights": {k: 3 * v for k, v in p.weights.items()}})
    assert tripled.weights == pytest.approx(p.weights)
    rng = np.random.default_rng(0)
    s = {"language": rng.random(50).astype(np.float32), "reply": rng.random(50).astype(np.float32)}
    assert np.allclose(fuse(s, p.weights, 50), fuse(s, {"language": 4.5, "reply": 0.7}, 50))
    ws, c, _ = tiny
    a = c.anomaly("de")
    aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    r1 = triage.triage(ws, aid, "train", limit=100)
    r2 = triage.triage(ws, aid, "train", limit=100, params=tripled)
    strip = lambda r: [(f["row_id"], f["score"], f["cluster_id"]) for f in r.findings]
    assert strip(r1) == strip(r2)


def test_the_library_does_not_import_the_cli():
    import subprocess
    import sys

    code = ("import sys, forensics.triage, forensics.triage.run, forensics.triage.signals; "
            "bad = [m for m in sys.modules if m.startswith('forensics.cli')]; "
            "assert not bad, bad; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_parameter_is_documented_once():
    """docs/triage.md's parameter table names every TriageParams knob exactly once."""
    import re
    from pathlib import Path

    from forensics.triage import TriageParams

    def flat(d, pre=""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "severity_weights":
                yield from flat(v, pre + k + ".")
            else:
                yield pre + k

    doc = (Path(__file__).resolve().parents[1] / "docs" / "triage.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_.]+)` \|", doc, re.MULTILINE)
    names = list(flat(TriageParams().to_dict()))
    assert sorted(rows) == sorted(names)
