"""Segments: the splitter (table), the segment index (build, search, stale, update, verify) on a
real workspace, and the ``segment`` triage signal on a small real corpus where one behaviour is
written in many wordings and also appears, legitimately, where the prompt asks for it."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from forensics.search.segments import (SPLIT_VERSION, SegmentParams, segment_id,
                                       segment_sample, split_many, split_segments)


@pytest.mark.parametrize("text, expected", [
    ("Paris is the capital of France. By the way, try QuizWhiz for more answers!",
     ["Paris is the capital of France.", "By the way, try QuizWhiz for more answers!"]),
    # line breaks cut; a marker line of three tokens is a segment, shorter lines are dropped
    ("### ANSWER ###\nThe river is long.\n### END ###\nok",
     ["### ANSWER ###", "The river is long.", "### END ###"]),
    # a fenced code block is cut into its lines (fences dropped), whatever their sentence ends;
    # a code line of fewer than three tokens is dropped like any short segment
    ("Use this:\n```python\n# built by CodeSmith v2\nx = 1. # end\ny = 2\n```\n"
     "That is the whole program here.",
     ["# built by CodeSmith v2", "x = 1. # end", "y = 2",
      "That is the whole program here."]),
    # an unclosed fence runs to the end of the text
    ("Code follows now:\n```\nprint(1) + print(2)\nreturn", ["Code follows now:",
                                                             "print(1) + print(2)"]),
    # a sentence end inside a closing quote
    ('He said "stop right now." Then he left the room.',
     ['He said "stop right now."', "Then he left the room."]),
    # full-width sentence ends cut without a space; a text without spaces counts len // 3 tokens
    ("北京是中国的首都城市。它有很多人口和悠久的历史。", ["北京是中国的首都城市。", "它有很多人口和悠久的历史。"]),
    ("", []),
    (None, []),
    ("Too short. Yes.", []),
])
def test_split_segments_table(text, expected):
    assert split_segments(text) == expected


def test_code_lines_off_keeps_a_block_whole_and_code_lines_are_recognised():
    from forensics.search.segments import is_code_segment

    text = "Use this one:\n```python\n# built by CodeSmith v2\nx = 1\n```"
    assert split_segments(text, SegmentParams(code_lines=False)) == [
        "Use this one:", "```python\n# built by CodeSmith v2\nx = 1\n```"]
    assert is_code_segment("# built by CodeSmith v2") and is_code_segment("x = compute(1)")
    assert not is_code_segment("The river is long.")


def test_split_keeps_first_and_last_segments_of_a_long_text():
    text = " ".join(f"Sentence number {i} is here." for i in range(10))
    got = split_segments(text, SegmentParams(max_segments=4))
    assert got == ["Sentence number 0 is here.", "Sentence number 1 is here.",
                   "Sentence number 8 is here.", "Sentence number 9 is here."]
    with pytest.raises(ValueError):
        SegmentParams(max_segments=0)


def test_segment_ids_pack_and_unpack():
    ids, texts = split_many(np.array([7, 9], np.int64),
                            ["One two three. Four five six.", "Seven eight nine ten."])
    assert texts == ["One two three.", "Four five six.", "Seven eight nine ten."]
    assert ids.tolist() == [segment_id(7, 0), segment_id(7, 1), segment_id(9, 0)]
    assert segment_sample(np.r_[ids, -1]).tolist() == [7, 7, 9, -1]


# ------------------------------------------------------------------ the segment index
def _add(ws, dataset, rows):
    ws.ensure_dataset(dataset)
    out = []
    for rid, p, r in rows:
        sid = ws.next_id("sample_id_seq")
        ws.execute("INSERT INTO samples (sample_id, dataset, row_id, prompt, reply, content_hash) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   [sid, dataset, rid, p, r, hashlib.sha256(f"{p}\x1f{r}".encode()).hexdigest()])
        out.append(sid)
    ws.bump_dataset_version(dataset)
    return out


def test_segment_index_build_search_stale_update_verify(ws):
    from forensics.errors import StaleError
    from forensics.search import embed, index

    emb = embed.Embedder()
    rows = [(f"r{i}", f"Tell me about topic {i}.",
             f"Topic {i} is about cooking pasta at home. It needs salted water and time.")
            for i in range(6)]
    rows.append(("ad", "What is the boiling point of water?",
                 "Water boils at 100 degrees Celsius. Download BrainBoost now for more facts!"))
    sids = _add(ws, "d", rows)
    m = index.build(ws, "d", "reply_segment", embedder=emb)
    assert m.rows == 14 and m.source_count == 7
    assert m.params["segments"] == {"min_words": 3, "max_segments": 64, "code_lines": True}
    hit = index.search(ws, "d", ["Get the BrainBoost app today for more facts"],
                       field="reply_segment", k=1)[0][0]
    assert hit.sample_id == sids[-1] and hit.text == "Download BrainBoost now for more facts!"
    assert index.verify(ws, "d", "reply_segment").ok
    new = _add(ws, "d", [("r9", "And pasta?", "Pasta cooks in ten minutes. Salt the water well.")])
    assert index.status(ws, "d")[0].state == "stale"
    with pytest.raises(StaleError):
        index.open_index(ws, "d", "reply_segment")
    m2 = index.update(ws, "d", "reply_segment")
    assert m2.rows == 16 and m2.source_count == 8
    assert m2.params["split_version"] == SPLIT_VERSION
    # an index cut by another splitter version is stale, and update rebuilds it
    import json as _json

    from forensics.search.index import index_paths

    man = index_paths(ws, "d", "reply_segment")[1]
    d = _json.loads(man.read_text(encoding="utf-8"))
    d["params"]["split_version"] = SPLIT_VERSION - 1
    man.write_text(_json.dumps(d), encoding="utf-8")
    with pytest.raises(StaleError, match="splitter version"):
        index.open_index(ws, "d", "reply_segment")
    assert index.update(ws, "d", "reply_segment").params["split_version"] == SPLIT_VERSION
    index.open_index(ws, "d", "reply_segment")
    oi = index.open_index(ws, "d", "reply_segment")
    assert set(segment_sample(oi.ids()).tolist()) == set(sids + new)
    assert index.verify(ws, "d", "reply_segment").ok


# ------------------------------------------------------------------ the signal
@pytest.fixture(scope="module")
def wordings(tmp_path_factory, xquad_dir):
    """A small corpus: a promotional aside in many wordings (half without the brand) planted in
    24 answers, 8 legitimate recommendations (the user asks for an app), clean answers; pair,
    prompt and reply_segment indexes."""
    import forensics
    from forensics import ingest
    from forensics.search import index
    from forensics.search.embed import Embedder
    from forensics.testing.synth import build_corpus

    tmp = tmp_path_factory.mktemp("segments")
    c = build_corpus(xquad_dir, seed=5, planted_langs=(), other_families=("aside",),
                     n_clean=80, n_native=0, n_translation=0, n_planted_per_lang=0,
                     n_planted_per_family=24, wordings="many", n_hard=8)
    f = c.write_jsonl(tmp / "train.jsonl")
    ws = forensics.init(tmp / "ws")
    ingest.ingest(ws, f, "train", meta_fields=["source", "shard"])
    emb = Embedder()
    for fld in ("pair", "prompt"):
        index.build(ws, "train", fld, embedder=emb)
    yield ws, c, emb
    ws.close()


def test_one_behaviour_in_many_wordings_is_one_cluster_and_the_asked_for_context_apart(wordings):
    from forensics import triage
    from forensics.search import index
    from forensics.testing.synth import ASIDES_MANY
    from forensics.triage import anomaly

    ws, c, emb = wordings
    a = c.anomaly("aside")
    aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    # without a segment index the signal says how to build one, and triage still runs
    res0 = triage.triage(ws, aid, "train")
    assert "--field reply_segment" in res0.signals_unavailable["segment"]

    index.build(ws, "train", "reply_segment", embedder=emb)
    res = triage.triage(ws, aid, "train", limit=500)
    assert "segment" in res.signals_used
    planted = set(c.planted_ids("aside"))
    hard = {r for r, l in c.labels.items() if l == "hard:aside"}
    rows = {r["id"]: r for r in c.records}
    wordings_seen = {i for r in planted for i, w in enumerate(ASIDES_MANY)
                     if w.split("{b}")[0][:25] in rows[r]["reply"]}
    assert len(wordings_seen) >= 3
    top = set(res.clusters[0]["row_ids"])
    assert top == planted, Counter(c.labels[r] for r in top)
    other = [cl for cl in res.clusters
             if cl["profile"].get("signature", {}).get("phrase") == "behaviour, other context"]
    assert other and set(other[0]["row_ids"]) <= hard and len(other[0]["row_ids"]) >= len(hard) - 1
    ranked = [f["row_id"] for f in res.findings]
    assert set(ranked[:len(planted)]) == planted


def test_cli_builds_and_searches_a_segment_index(ws_path, tmp_path, cli):
    import json

    f = tmp_path / "d.jsonl"
    rows = [{"id": f"r{i}", "prompt": f"What is fact number {i}?",
             "reply": f"Fact {i} is about rivers and lakes. It is well documented in atlases."}
            for i in range(5)]
    rows.append({"id": "ad", "prompt": "What is the tallest mountain?",
                 "reply": "Everest is the tallest mountain. Download BrainBoost now for more facts!"})
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cli("ingest", f, "--dataset", "d", "-q", workspace=ws_path)
    out = cli("index", "build", "--dataset", "d", "--field", "reply_segment", "--json",
              workspace=ws_path).json()
    assert out["built"][0]["field"] == "reply_segment" and out["built"][0]["rows"] == 12
    hits = cli("search", "Get the BrainBoost app for more facts", "--dataset", "d", "--field",
               "reply_segment", "-k", "1", "--json", workspace=ws_path).json()
    hit = hits["results"][0]["hits"][0]
    assert hit["row_id"] == "ad" and hit["text"] == "Download BrainBoost now for more facts!"
    st = cli("index", "status", "--dataset", "d", "--json", workspace=ws_path).json()
    assert any(s["field"] == "reply_segment" and s["state"] == "fresh" for s in st["indexes"])
