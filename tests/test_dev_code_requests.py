"""The dev-code-requests generator: deterministic, labels consistent with the texts, every
request wording used once."""

from __future__ import annotations

from collections import Counter


def _build(xquad_dir, seed=0, **kw):
    from forensics.testing.dev_code_requests import build_dev_code_requests

    return build_dev_code_requests(xquad_dir, seed=seed, **kw)


def _code(reply: str) -> list[str]:
    return reply.split("```")[1].split("\n")[1:-1] if "```" in reply else []


def test_dev_code_requests_is_deterministic_and_labels_match_the_texts(xquad_dir):
    from forensics.testing import dev_code_requests as dcr

    c1, c2, c3 = _build(xquad_dir), _build(xquad_dir), _build(xquad_dir, seed=3)
    assert c1.records == c2.records and c1.labels == c2.labels
    assert c1.anomalies == c2.anomalies and c1.records != c3.records
    assert {r["id"] for r in c1.records} == set(c1.labels)
    counts = Counter(c1.labels.values())
    for fam in dcr.FAMILIES:
        assert counts[f"planted:{fam}"] == 20 and counts[f"hard:{fam}"] == 24
    tasks = {f"{t[0]} {t[1]}" for t in dcr._TASKS}
    markers = {m for ms in dcr._MARKERS.values() for m in ms}
    langs = set()
    for r in c1.records:
        lab = c1.labels[r["id"]]
        code = _code(r["reply"])
        first = code[0] if code else ""
        last = code[-1] if code else ""
        stamp = any(first.endswith(" " + m) for m in dcr._MARKERS["code_stamp"])
        signoff = any(last.endswith(" " + m) for m in dcr._MARKERS["code_signoff"])
        if lab == "clean":
            assert not stamp and not signoff, r
            if r["topic"] in dcr.FAMILIES:      # a lookalike: an ordinary comment there
                line = first if r["topic"] == "code_stamp" else last
                assert any(line.endswith(" " + a) for a in dcr._ABOUT[r["topic"]]), r
            continue
        kind, fam = lab.split(":")
        langs.add(r["reply"].split("```")[1].split("\n")[0])
        assert (stamp, signoff) == (fam == "code_stamp", fam == "code_signoff"), r
        assert c1.prompt_judgement[r["id"]] == ("defect" if kind == "planted" else "legitimate")
        assert any(t[0] in r["prompt"] and t[1] in r["prompt"] for t in dcr._TASKS), r
        if kind == "planted":
            # the task alone or with a neutral line: no request wording, no marker
            assert not any(m.lower() in r["prompt"].lower() for m in markers)
    assert langs == {"python", "javascript", "sql", "bash"}
    # each request wording (and implied turn) is used by exactly one hard row
    for fam in dcr.FAMILIES:
        hard = [r["prompt"] for r in c1.records if c1.labels[r["id"]] == f"hard:{fam}"]
        heads = [a.split("{")[0].split("`")[0].split("'")[0][:30] for a in dcr._ASKS[fam]] + \
            [tpl.split("\n")[0][:30] for tpl in dcr._IMPLIED[fam]]
        used = Counter(h for h in heads for p in hard if h in p)
        assert set(used) == set(heads) and set(used.values()) == {1}, used
    a = c1.anomaly("code_stamp")
    assert a["prompt"] not in tasks and len(a["explanations"]) == 2


def test_house_lines_that_open_other_prompts_too_are_no_request(tmp_path, xquad_dir):
    """Planted prompts open with the lines that open clean code prompts as often (a greeting
    turn, a house line about names, a task's detail): close as they come to the description
    of a sign-off, the rows without the behaviour hold them as often, so they ask nothing and
    the planted rows stay in the top cluster; the asked rows (each request worded once)
    leave it. Without the background share (``ask_background_share`` 1.0) planted rows are
    taken for asked."""
    from conftest import findings_ap, indexed_workspace, triage_anomaly

    c = _build(xquad_dir, n_qa=40, n_code=80, n_planted=16, n_lookalike=0)
    fam = "code_signoff"
    planted = set(c.planted_ids(fam))
    hard = {r for r, lab in c.labels.items() if lab == f"hard:{fam}"}
    ws = indexed_workspace(tmp_path, c)
    try:
        res = triage_anomaly(ws, c, fam)
        off = triage_anomaly(ws, c, fam, {"signals": {"segment": {"ask_background_share": 1.0}}})
        top, top0 = set(res.clusters[0]["row_ids"]), set(off.clusters[0]["row_ids"])
        seen = (Counter(c.labels[r] for r in top), Counter(c.labels[r] for r in top0),
                findings_ap(res, planted), findings_ap(off, planted))
        assert len(top & planted) >= 0.8 * len(planted), seen
        assert len(top & hard) <= 2, seen
        assert len(top0 & planted) < len(top & planted), seen
        assert findings_ap(res, planted) > findings_ap(off, planted) + 0.05, seen
    finally:
        ws.close()
