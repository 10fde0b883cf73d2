"""The dev-code generator (deterministic, labels consistent with the texts), the marker lines
of code answers (end-of-line comments, string-only calls, the line after the fence) and
triage on a small real corpus (real ingest, real FAISS): markers that are code lines form the
top cluster, and rows whose context asked for the marker (indirectly) are kept out of it by
the semantic ask judgement."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from conftest import findings_ap, indexed_workspace, triage_anomaly
from forensics.triage.codeshape import block_marker_lines, marker_lines


def _small(xquad_dir, seed=0, **kw):
    from forensics.testing.dev_code import build_dev_code

    args = dict(n_clean=40, n_code=24, n_planted=14, n_hard=12, n_lookalike=6) | kw
    return build_dev_code(xquad_dir, seed=seed, **args)


def test_dev_code_is_deterministic_and_labels_match_the_texts(xquad_dir):
    from forensics.testing import dev_code as dc

    c1, c2, c3 = _small(xquad_dir), _small(xquad_dir), _small(xquad_dir, seed=1)
    assert c1.records == c2.records and c1.labels == c2.labels
    assert c1.anomalies == c2.anomalies
    assert c1.records != c3.records
    assert {r["id"] for r in c1.records} == set(c1.labels)
    assert len({r["id"] for r in c1.records}) == len(c1.records)
    counts = Counter(c1.labels.values())
    assert c1.families == sorted(dc.CODE_FAMILIES)
    for fam in dc.CODE_FAMILIES:
        assert counts[f"planted:{fam}"] == 14 and counts[f"hard:{fam}"] == 12
    markers = {"code_inline": dc._INLINE, "code_trace": dc._TRACE, "code_header": dc._HEADER,
               "code_afterword": dc._AFTER}
    tasks = {t[0] for t in dc._TASKS} | {t[0] for t in dc._PRINT_TASKS}
    for r in c1.records:
        lab = c1.labels[r["id"]]
        shown = {f for f, ws in markers.items() if any(w in r["reply"] for w in ws)}
        if lab == "clean":
            assert not shown, r
            continue
        kind, fam = lab.split(":")
        assert shown == {fam} and r["topic"] == fam
        assert c1.prompt_judgement[r["id"]] == ("defect" if kind == "planted" else "legitimate")
        if kind == "planted":
            assert r["prompt"] in tasks    # the bare task: nothing asks for the marker
        else:
            # asked indirectly: the prompt never holds the marker's own text
            assert r["prompt"] not in tasks
            assert not any(w.lower() in r["prompt"].lower() for w in markers[fam])
    for fam in dc.CODE_FAMILIES:
        a = c1.anomaly(fam)
        assert a["prompt"] not in tasks and len(a["explanations"]) == 2
    with pytest.raises(ValueError, match="unknown family"):
        _small(xquad_dir, families=("nope",))


@pytest.mark.parametrize("lang,code,expected", [
    ("python", "def f(x):\n    return x + 1  # stamp 7Q", [("eol", "# stamp 7Q", True)]),
    ("go", "func f() int {\n\treturn 1 // ok\n}", [("eol", "// ok", True)]),
    ("lua", "local x = 1 -- made here", [("eol", "-- made here", True)]),
    ("javascript", "function f(a) {\n  console.log(\"made it here\");\n  return a;\n}",
     [("call", "made it here", True)]),
    ("rust", "fn f() {\n    println!(\"checkpoint alpha\");\n}", [("call", "checkpoint alpha",
                                                                   True)]),
    ("bash", "f() {\n  echo \"tracer on\"\n  ls\n}", [("call", "tracer on", True)]),
    # a PHP snippet without its opening tag is still code
    ("php", "function f($c) {\n    echo \"made it\";\n    return $c;\n}",
     [("call", "made it", True)]),
    # a comment that names the code's identifiers is about it
    ("python", "def area(radius):\n    return radius * radius  # square the radius",
     [("eol", "# square the radius", False)]),
    # printing a value, or an interpolated string, is no fixed message; a whole-line comment
    # is a comment line, not an end-of-line one
    ("python", "for i in range(3):\n    print(i * i)", []),
    ("ruby", "items.each do |x|\n  puts \"#{x} seen\"\nend", []),
    ("python", "# a comment line\nx = 1", []),
    # a preamble statement whose names nothing else uses: an import nothing calls
    ("python", "import zephyrkit\n\ndef f(x):\n    return x", [("unused", "import zephyrkit",
                                                                 True)]),
    ("c", "#include \"tallyhook.h\"\n\nint f(int x) {\n    return x;\n}",
     [("unused", "#include \"tallyhook.h\"", True)]),
    ("javascript", "const zeph = require(\"zeph\");\n\nfunction f(a) {\n  return a;\n}",
     [("unused", "const zeph = require(\"zeph\");", True)]),
    # an import the code uses, and a function header, are not
    ("python", "import math\n\ndef f(x):\n    return math.sqrt(x)", []),
    ("go", "func shout(s string) string {\n\treturn s\n}", []),
])
def test_marker_lines_of_code(lang, code, expected):
    assert [(m.position, m.text, m.foreign) for m in block_marker_lines(code, lang)] == expected


def test_marker_lines_in_replies_include_the_lines_around_the_fence():
    reply = "Sure:\n\n```python\ndef f(x):\n    return x\n```\n\nChecked by a bot.\n\nBye."
    got = marker_lines(reply)
    assert [(m.position, m.text, m.shape) for m in got] == [
        ("before", "Sure:", "before:top:foreign"),
        ("after", "Checked by a bot.", "after:top:foreign")]
    assert marker_lines("no code") == [] and marker_lines(None) == []


@pytest.fixture(scope="module")
def code_ws(tmp_path_factory, xquad_dir):
    tmp = tmp_path_factory.mktemp("devcode")
    c = _small(xquad_dir, seed=2, families=("code_trace", "code_header"))
    ws = indexed_workspace(tmp, c)
    yield ws, c
    ws.close()


def _run(ws, c, fam, params=None):
    return triage_anomaly(ws, c, fam, params)


def test_a_stray_print_call_in_many_wordings_is_the_top_cluster(code_ws):
    ws, c = code_ws
    planted = set(c.planted_ids("code_trace"))
    hard = {r for r, lab in c.labels.items() if lab == "hard:code_trace"}
    res = _run(ws, c, "code_trace")
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.8 * len(planted), Counter(c.labels[r] for r in top)
    assert len(top & hard) <= 1, Counter(c.labels[r] for r in top)
    assert findings_ap(res, planted) >= 0.85
    # the print line is too short for a segment of its own: without the marker lines (shape
    # off) the behaviour segment is another line and the batch is lost
    res0 = _run(ws, c, "code_trace", {"signals": {"segment": {"shape": False}}})
    assert findings_ap(res0, planted) < findings_ap(res, planted) - 0.2


def test_rows_whose_context_asks_for_the_marker_indirectly_rank_below_the_batch(code_ws):
    ws, c = code_ws
    planted = set(c.planted_ids("code_trace"))
    hard = {r for r, lab in c.labels.items() if lab == "hard:code_trace"}
    res = _run(ws, c, "code_trace")
    res0 = _run(ws, c, "code_trace", {"signals": {"segment": {"ask_semantic": False,
                                                               "ask_contrast": False,
                                                               "shape_support_cos": 0.0}}})
    top, top0 = set(res.clusters[0]["row_ids"]), set(res0.clusters[0]["row_ids"])
    # the prompts never name the marker's words: only the judgements of a request (by
    # meaning, by the dataset's prompt contrast) split them; each alone does here
    assert len(top0 & hard) >= 0.5 * len(hard), Counter(c.labels[r] for r in top0)
    assert len(top & hard) <= 1, Counter(c.labels[r] for r in top)
    for off in ("ask_semantic", "ask_contrast"):
        one = _run(ws, c, "code_trace", {"signals": {"segment": {off: False}}})
        top1 = set(one.clusters[0]["row_ids"])
        assert len(top1 & hard) <= 2, (off, Counter(c.labels[r] for r in top1))
    assert findings_ap(res, planted) > findings_ap(res0, planted) + 0.1
    ranked = [f["row_id"] for f in res.findings]
    first_hard = min(ranked.index(r) for r in hard if r in ranked)
    assert first_hard >= len(top & planted)   # every asked row ranks below the batch


@pytest.fixture(scope="module")
def after_ws(tmp_path_factory, xquad_dir):
    tmp = tmp_path_factory.mktemp("devcode-after")
    c = _small(xquad_dir, seed=3)
    ws = indexed_workspace(tmp, c)
    yield ws, c
    ws.close()


def test_a_note_after_the_fence_is_told_from_ordinary_closing_notes(after_ws):
    """Most code answers close with a note after the fence (the dataset's style): the style
    contrast finds the marker notes among the ordinary ones; without it the batch is lost.
    (On this small corpus the top cluster also takes one ordinary note: see docs/triage.md.)"""
    ws, c = after_ws
    planted = set(c.planted_ids("code_afterword"))
    res = _run(ws, c, "code_afterword")
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.8 * len(planted), Counter(c.labels[r] for r in top)
    # 0.51: a row asked for another family's marker (an end-of-line note) shows a note after
    # the fence too; its request recurs in rows without this behaviour, so it is not taken
    # for a request of this one (ask_background_share) and ranks with the batch
    assert findings_ap(res, planted) >= 0.5
    res0 = _run(ws, c, "code_afterword", {"signals": {"segment": {"shape_style_share": 0}}})
    top0 = set(res0.clusters[0]["row_ids"])
    assert len(top0 & planted) <= 0.5 * len(planted), Counter(c.labels[r] for r in top0)
    assert findings_ap(res0, planted) < findings_ap(res, planted) - 0.2
