"""The code comment shape: the fingerprint of comment lines (table over languages and comment
syntaxes), and triage on a small real corpus where one stray closing comment, in wordings that
share no word, is one cluster and the rows that asked for it are not in it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from forensics.triage.codeshape import block_comment_lines, comment_lines
from conftest import indexed_workspace, triage_anomaly


@pytest.mark.parametrize("lang,code,expected", [
    # a closing remark after the code, top level, about nothing in the code
    ("python", "def area(r):\n    return 3.14 * r * r\n# fingers crossed", ["last:top:foreign"]),
    ("c", "int twice(int x) {\n  return 2 * x;\n}\n/* ship it */", ["last:top:foreign"]),
    ("html", "<ul>\n  <li>Tea</li>\n</ul>\n<!-- bye for now -->", ["last:top:foreign"]),
    ("lua", "for i = 1, 3 do\n  print(i)\nend\n-- so long", ["last:top:foreign"]),
    ("rust", "fn one() -> i32 {\n    1\n}\n// all done", ["last:top:foreign"]),
    # a comment inside the body that names the code's identifiers
    ("python", "def total(prices):\n    # sum the prices\n    return sum(prices)",
     ["inner:nested:about"]),
    ("javascript", "function isBlank(s) {\n  // blank when only spaces\n  return !s.trim();\n}",
     ["inner:nested:about"]),
    # a banner before the code; a comment inside an open bracket is not top level
    ("sql", "-- made by a robot\nSELECT 1;", ["first:top:foreign"]),
    ("python", "xs = [\n# note to self\n  1,\n]", ["inner:nested:foreign"]),
    # not comments: a string holding a comment marker, a C preprocessor line
    ("python", "s = '# not a comment'\nprint(s)", []),
    ("c", "#include <stdio.h>\nint main(void) { return 0; }", []),
])
def test_comment_line_shapes(lang, code, expected):
    assert [c.shape for c in block_comment_lines(code, lang)] == expected


def test_comment_lines_in_replies_unnamed_fences_and_text_outside_code():
    reply = ("Here it is:\n\n```\nint f() {\n  return 1;\n}\n// have a nice day\n```\n\n"
             "# Not code: a markdown heading outside any fence")
    got = comment_lines(reply)
    assert [(c.text, c.shape, c.lang) for c in got] == [
        ("// have a nice day", "last:top:foreign", "")]
    # an unknown language falls back to the fallback lexers; none: nothing is a comment
    assert [c.shape for c in comment_lines("```klingon\nx = 1\n# qapla\n```")] == \
        ["last:top:foreign"]
    assert comment_lines("```klingon\nx = 1\n# qapla\n```", fallback=()) == []
    assert comment_lines("no code here") == [] and comment_lines(None) == []


@pytest.fixture(scope="module")
def tails(tmp_path_factory, xquad_dir):
    from forensics.testing.dev_families import build_dev_families

    tmp = tmp_path_factory.mktemp("codeshape")
    c = build_dev_families(xquad_dir, seed=4, n_clean=60, n_code=24, n_planted=16, n_hard=10,
                           families=("code_quirk", "code_tail"))
    ws = indexed_workspace(tmp, c)
    yield ws, c
    ws.close()


def _run(ws, c, params=None):
    return triage_anomaly(ws, c, "code_tail", params)


def test_a_code_quirk_in_unrelated_wordings_is_one_cluster_and_asked_rows_are_apart(tails):
    from forensics.testing.dev_families import _TAILS

    ws, c = tails
    planted = set(c.planted_ids("code_tail"))
    hard = {r for r, lab in c.labels.items() if lab == "hard:code_tail"}
    rows = {r["id"]: r for r in c.records}
    # the planted wordings share no word with each other nor with the anomaly's remark
    assert len({w for w in _TAILS if any(w in rows[r]["reply"] for r in planted)}) >= 4
    res = _run(ws, c)
    top = set(res.clusters[0]["row_ids"])
    assert top == planted, Counter(c.labels[r] for r in top)
    other = [cl for cl in res.clusters
             if cl["profile"].get("signature", {}).get("phrase") == "behaviour, other context"]
    assert other and set(other[0]["row_ids"]) & hard and not set(other[0]["row_ids"]) & planted
    ranked = [f["row_id"] for f in res.findings]
    assert len(set(ranked[:len(planted)]) & planted) >= len(planted) - 1
    # the shape is what joins the wordings: without it the top cluster misses most of them
    res0 = _run(ws, c, {"signals": {"segment": {"shape": False}}})
    top0 = set(res0.clusters[0]["row_ids"]) if res0.clusters else set()
    assert len(top0 & planted) < 0.7 * len(planted)


def test_two_class_split_separates_lines_repeated_verbatim():
    from forensics.triage.signals.segment_shape import two_class_split

    # many rows share a few ordinary lines (a median and MAD over them are degenerate); a
    # minority of rows carries lines of another kind
    vals = np.array([-0.4] * 30 + [-0.12] * 20 + [-0.1] * 25 + [0.5] * 6 + [0.6] * 8 + [0.65] * 5)
    cut = two_class_split(vals)
    assert -0.1 < cut < 0.5
    assert two_class_split(np.array([0.3] * 5)) is None
    assert two_class_split(np.array([1.0])) is None
