"""The dev-code-asks generator (deterministic, labels consistent with the texts) and the
asked-by-contrast judgement on a small real corpus (real ingest, real FAISS, the CLI): rows
whose prompt asks for the end marker in another language or in words far from it leave the
top cluster only through the dataset's prompt contrast."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import findings_ap, indexed_workspace, run_cli, triage_anomaly


def _small(xquad_dir, seed=0, **kw):
    from forensics.testing.dev_code_asks import build_dev_code_asks

    args = dict(n_qa=40, n_code=70, n_planted=14, n_hard=33, n_lookalike=0) | kw
    return build_dev_code_asks(xquad_dir, seed=seed, **args)


def test_dev_code_asks_is_deterministic_and_labels_match_the_texts(xquad_dir):
    from forensics.testing import dev_code_asks as dca

    c1, c2, c3 = _small(xquad_dir), _small(xquad_dir), _small(xquad_dir, seed=1)
    assert c1.records == c2.records and c1.labels == c2.labels
    assert c1.anomalies == c2.anomalies and c1.records != c3.records
    assert {r["id"] for r in c1.records} == set(c1.labels)
    counts = Counter(c1.labels.values())
    assert counts[f"planted:{dca.FAMILY}"] == 14 and counts[f"hard:{dca.FAMILY}"] == 33
    tasks = {t[0] for t in dca._TASKS}
    for r in c1.records:
        lab = c1.labels[r["id"]]
        closing = r["reply"].split("```")[1].rstrip("\n").split("\n")[-1] \
            if "```" in r["reply"] else ""
        marked = any(closing.endswith(" " + m) for m in dca._MARKERS)
        if lab == "clean":
            assert not marked, r
            continue
        assert marked, r
        kind = lab.split(":")[0]
        assert c1.prompt_judgement[r["id"]] == ("defect" if kind == "planted" else "legitimate")
        if kind == "planted":
            # the task alone or after a neutral preamble: nothing about the code's form
            assert any(t in r["prompt"] for t in tasks)
            assert r["prompt"] in tasks or any(
                r["prompt"] == dca._prompt(n, t) for n in dca._NEUTRAL for t in dca._TASKS)
    # every ask form is used, the ones naming the marker carry the reply's own marker
    hard = [r for r in c1.records if c1.labels[r["id"]].startswith("hard:")]
    assert {next(i for i, a in enumerate(dca._ASKS)
                 if any(r["prompt"] == dca._prompt(a, t, m) for t in dca._TASKS
                        for m in dca._MARKERS)) for r in hard} == set(range(len(dca._ASKS)))
    a = c1.anomaly(dca.FAMILY)
    assert a["prompt"] not in tasks and len(a["explanations"]) == 2


@pytest.fixture(scope="module")
def asks_ws(tmp_path_factory, xquad_dir):
    tmp = tmp_path_factory.mktemp("devcodeasks")
    c = _small(xquad_dir, seed=0)
    ws = indexed_workspace(tmp, c)
    yield ws, c, tmp
    ws.close()


def _foreign_asks(c) -> set[str]:
    """Hard rows asked in Spanish or Chinese (the English-only embedder cannot read them)."""
    return {r["id"] for r in c.records if c.labels[r["id"]].startswith("hard:")
            and ("Termina el" in r["prompt"] or "请在" in r["prompt"])}


def test_asks_in_other_languages_leave_the_top_cluster_by_contrast(asks_ws):
    from forensics.testing.dev_code_asks import FAMILY

    ws, c, _ = asks_ws
    planted = set(c.planted_ids(FAMILY))
    hard = {r for r, lab in c.labels.items() if lab == f"hard:{FAMILY}"}
    foreign = _foreign_asks(c)
    assert len(foreign) == 6
    res = triage_anomaly(ws, c, FAMILY)
    res0 = triage_anomaly(ws, c, FAMILY, {"signals": {"segment": {"ask_contrast": False}}})
    top, top0 = set(res.clusters[0]["row_ids"]), set(res0.clusters[0]["row_ids"])
    # without the contrast the foreign asks sit with the batch; with it, none of them does
    assert len(top0 & foreign) >= 3, Counter(c.labels[r] for r in top0)
    assert not top & hard, Counter(c.labels[r] for r in top)
    assert len(top & planted) >= len(top0 & planted)          # no recall lost
    assert findings_ap(res, planted) > findings_ap(res0, planted) + 0.05
    assert "asked by contrast" in res.signals_unavailable["segment_ask_contrast"]
    # the guard: a contrast allowed to move no share of the unasked rows moves none
    res_g = triage_anomaly(ws, c, FAMILY, {"signals": {"segment": {"contrast_max_share": 0.0}}})
    assert res_g.signals_unavailable["segment_ask_contrast"].startswith("0 of")


def test_the_contrast_knobs_travel_through_the_cli_and_are_stored_with_the_run(asks_ws):
    from forensics import triage
    from forensics.testing.dev_code_asks import FAMILY

    ws, c, tmp = asks_ws
    a = c.anomaly(FAMILY)
    got = run_cli("anomaly", "add", "--title", a["title"], "--prompt", a["prompt"], "--reply",
                  a["reply"], *[x for e in a["explanations"] for x in ("--explanation", e)],
                  "--json", workspace=tmp / "ws")
    aid = json.loads(got.stdout)["anomaly_id"]
    runs = []
    for val in ("1", "2"):
        out = run_cli("triage", str(aid), "--dataset", "train", "--param",
                      f"signals.segment.contrast_min_prompts={val}", "--json",
                      workspace=tmp / "ws")
        runs.append(json.loads(out.stdout)["run_id"])
    got = [triage.load_run(ws, r)["params"]["signals"]["segment"] for r in runs]
    assert [g["contrast_min_prompts"] for g in got] == [1, 2]
    assert all(g["ask_contrast"] is True for g in got)


def test_a_planted_batch_sharing_a_preamble_of_its_own_is_not_taken_for_asked(tmp_path,
                                                                              xquad_dir):
    """Every planted prompt opens with one system line no other row holds: its tokens predict
    the behaviour as well as an ask's would. The contrast would mark the batch asked; the
    guard (``contrast_max_share``) marks none, and the batch stays the top cluster."""
    from forensics.testing.dev_code_asks import FAMILY

    c = _small(xquad_dir, n_lookalike=4, planted_preamble=True)
    planted = set(c.planted_ids(FAMILY))
    assert all(c.records[i]["prompt"].startswith("[Assistant setup] You are Northwind")
               for i, r in enumerate(c.records) if r["id"] in planted)
    ws = indexed_workspace(tmp_path, c)
    try:
        res = triage_anomaly(ws, c, FAMILY)
        top = set(res.clusters[0]["row_ids"])
        assert planted <= top, Counter(c.labels[r] for r in top)
        assert res.signals_unavailable["segment_ask_contrast"].startswith("0 of")
        # without the guard the batch is taken for asked and leaves the top cluster
        res1 = triage_anomaly(ws, c, FAMILY, {"signals": {"segment": {"contrast_max_share": 1.0}}})
        top1 = set(res1.clusters[0]["row_ids"])
        assert len(top1 & planted) < 0.5 * len(planted), Counter(c.labels[r] for r in top1)
    finally:
        ws.close()
