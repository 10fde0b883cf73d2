"""Shape members whose recurring wording nothing supports lack the behaviour
(:func:`forensics.triage.signals.segment_shape.unsupported_wordings`): the pure rule on given
vectors, and its effect through the public triage API on a small dev-code-asks corpus
(real ingest, real FAISS)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from conftest import findings_ap, indexed_workspace, triage_anomaly


def test_wording_drops_the_comment_syntax():
    from forensics.triage.signals.segment_shape import wording

    assert {wording(t) for t in ("# end of it", "-- end of it", "// end of it",
                                 "/* end of it */", "<!-- end of it -->")} == {"end of it"}
    assert wording("#") == "#"


def _fake_embed(table: dict[str, list[float]]):
    def embed(texts):
        v = np.array([table[t] for t in texts], np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    return embed


def test_recurring_unsupported_wordings_are_dropped_and_singletons_kept():
    from forensics.triage.signals.segment import SegmentSignalParams
    from forensics.triage.signals.segment_shape import ShapeEvidence, unsupported_wordings

    n = 8
    z = np.zeros(n, bool)
    comments = {0: "# stamp A", 1: "// stamp A", 2: "# note B", 3: "-- note B", 4: "# note C",
                5: "# stamp A", 6: "# tag D", 7: "// tag D"}
    shape = ShapeEvidence(z.copy(), z.copy(), np.zeros(n), z.copy(), {}, comments)
    table = {"anomaly line": [1, 0, 0, 0], "stamp A": [0.95, 0.31, 0, 0],
             "note B": [0, 0, 1, 0], "note C": [0, 0, 0.9, 0.43], "tag D": [0.3, 0, 0, 0.95],
             "the description": [0.2, 0, 0, 1]}
    support = np.array([0, 0, 0, 0, 0, 1, 0, 0], bool)          # row 5 was asked for it
    cand = ~support
    p = SegmentSignalParams(shape_support_desc_quantile=1.0)
    got = unsupported_wordings(shape, cand, support, "# anomaly line", ["the description"],
                               _fake_embed(table), p)
    # stamp A: an asked row's wording; note B: recurs unsupported; note C: seen once;
    # tag D: recurs unsupported (no description rescue with the quantile at 1.0)
    assert got.tolist() == [False, False, True, True, False, False, True, True]
    # the description names tag D (cosine 0.95 against the exemplars' 0-0.3): rescued
    p = SegmentSignalParams(shape_support_desc_quantile=0.5)
    got = unsupported_wordings(shape, cand, support, "# anomaly line", ["the description"],
                               _fake_embed(table), p)
    assert got.tolist() == [False, False, True, True, False, False, False, False]
    assert not unsupported_wordings(shape, cand, support, "# anomaly line", [],
                                    _fake_embed(table),
                                    SegmentSignalParams(shape_support_cos=0.0)).any()


def test_ordinary_last_line_comments_leave_the_top_cluster(tmp_path, xquad_dir):
    """dev-code-asks: ordinary last-line comments that name no identifier ("runs in linear
    time") share the end markers' place; their wordings recur and no asked row, text member
    or the explanations support them, so they leave the top cluster. Without the support
    test (``shape_support_cos`` 0) they sit in it."""
    from forensics.testing.dev_code_asks import FAMILY, build_dev_code_asks

    c = build_dev_code_asks(xquad_dir, seed=0, n_qa=40, n_code=70, n_planted=16, n_hard=33,
                            n_lookalike=10)
    planted = set(c.planted_ids(FAMILY))
    look = {r["id"] for r in c.records if c.labels[r["id"]] == "clean"
            and r["topic"] == FAMILY}
    ws = indexed_workspace(tmp_path, c)
    try:
        res = triage_anomaly(ws, c, FAMILY)
        off = triage_anomaly(ws, c, FAMILY, {"signals": {"segment": {"shape_support_cos": 0.0}}})
        top, top0 = set(res.clusters[0]["row_ids"]), set(off.clusters[0]["row_ids"])
        seen = (Counter(c.labels[r] + ("/look" if r in look else "") for r in top),
                Counter(c.labels[r] + ("/look" if r in look else "") for r in top0),
                findings_ap(res, planted), findings_ap(off, planted))
        assert len(top0 & look) >= 5, seen
        assert len(top & look) <= 3, seen
        assert len(top & planted) >= len(top0 & planted) - 1, seen
        assert findings_ap(res, planted) > findings_ap(off, planted), seen
        assert "shape members" in res.signals_unavailable["segment_shape_unsupported"]
    finally:
        ws.close()
