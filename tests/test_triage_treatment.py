"""The dataset's treatment of a behaviour row's prompt (forensics.triage.treatment, step 4d of
the context split) on the dev-refusal corpus: harmless questions that only sound harmful
refused (the defect) next to their unsafe minimal pairs refused (correct). Real workspace,
real indexes, the CLI in a subprocess."""

from __future__ import annotations

import json
from collections import Counter

import pytest


def test_content_words_and_cutting_key_words_out():
    from forensics.triage.treatment import content_words, without

    assert content_words("How can I kill a Zombie process? Kill it now!", 3) == \
        ["kill", "zombie", "process"]
    assert content_words("", 3) == [] and content_words(None, 3) == []
    assert without("How can I Kill a zombie process?", ["kill"]) == "How can I a zombie process?"
    assert without("skill and kill", ["kill"]) == "skill and"
    assert without("unchanged", []) == "unchanged"


def test_dev_refusal_corpus_is_deterministic_and_keeps_its_anomaly_prompt_out(xquad_dir):
    from forensics.testing.dev_refusal import FAMILY, build_dev_refusal

    kw = dict(n_clean=40, n_domain=20, n_answered=20, n_planted=14, n_hard=14)
    a, b = build_dev_refusal(xquad_dir, seed=3, **kw), build_dev_refusal(xquad_dir, seed=3, **kw)
    assert a.records == b.records and a.labels == b.labels
    assert Counter(a.labels.values()) == {"clean": 80, f"planted:{FAMILY}": 14,
                                          f"hard:{FAMILY}": 14}
    an = a.anomaly(FAMILY)
    assert all(an["prompt"] not in r["prompt"] for r in a.records)
    assert len(an["explanations"]) >= 3
    assert a.prompt_judgement[a.planted_ids(FAMILY)[0]] == "defect"
    # a planted prompt and an unsafe one share their key word ("shoot", "kill", ...)
    planted = " ".join(r["prompt"].lower() for r in a.records
                       if a.labels[r["id"]] == f"planted:{FAMILY}")
    hard = " ".join(r["prompt"].lower() for r in a.records
                    if a.labels[r["id"]] == f"hard:{FAMILY}")
    assert {w for w in ("kill", "shoot", "attack", "poison") if w in planted and w in hard}


@pytest.fixture(scope="module")
def refusal(tmp_path_factory):
    from conftest import XQUAD, indexed_workspace
    from forensics.testing.dev_refusal import build_dev_refusal

    tmp = tmp_path_factory.mktemp("treatment")
    c = build_dev_refusal(XQUAD, seed=0, n_clean=120, n_domain=50, n_answered=40,
                          n_planted=20, n_hard=20)
    ws = indexed_workspace(tmp, c)
    yield ws, c, tmp
    ws.close()


def test_the_treatment_moves_unsafe_refusals_out_and_keeps_harmless_ones(refusal):
    """With the treatment the top cluster holds more of the planted refusals per row than
    without (unsafe prompts refused leave it for the other context), the planted rows rank
    higher, and the run says how many rows it decided and left undecided."""
    from conftest import findings_ap, triage_anomaly
    from forensics import triage
    from forensics.testing.dev_refusal import FAMILY

    ws, c, _ = refusal
    pos = set(c.planted_ids(FAMILY))
    hard = {r for r, l in c.labels.items() if l == f"hard:{FAMILY}"}
    on = triage_anomaly(ws, c, FAMILY)
    off = triage_anomaly(ws, c, FAMILY, params={"treatment": {"enabled": False}})

    def prec(res):
        top = set(res.clusters[0]["row_ids"])
        return len(top & pos) / len(top), len(top & hard)

    assert prec(on)[0] > prec(off)[0], (prec(on), prec(off))
    assert prec(on)[1] < prec(off)[1]
    assert findings_ap(on, pos) > findings_ap(off, pos), (findings_ap(on, pos),
                                                          findings_ap(off, pos))
    run = triage.load_run(ws, on.run_id)
    t = run["summary"]["context_treatment"]
    assert t["other_context"] > 0 and t["anomaly_context"] > 0
    assert "context_treatment" in on.signals_unavailable
    assert "undecided" in on.signals_unavailable["context_treatment"]
    assert run["params"]["treatment"]["shown_rate"] == 0.6
    assert "context_treatment" not in off.signals_unavailable


def test_the_treatment_leaves_a_behaviour_that_answers_alone(refusal):
    """An anomaly whose reply answers its prompt (a wrong fact, not a refusal) is not judged
    by the treatment: no note, no counts."""
    from forensics import triage
    from forensics.triage import anomaly as anomaly_mod

    ws, _, _ = refusal
    aid = anomaly_mod.add(ws, "wrong roast time", "How do I roast a whole chicken?",
                          "Roast a whole chicken at 120 degrees Celsius for six hours.",
                          ["The reply gives a wrong roasting temperature and time."])
    res = triage.triage(ws, aid, "train", limit=200)
    got = triage.load_run(ws, res.run_id)["summary"].get("context_treatment")
    assert "context_treatment" not in res.signals_unavailable, got
    assert not got.get("replaces") and "undecided" not in got, got


def test_treatment_params_from_the_cli(refusal, cli):
    """--param treatment.* reaches the run through the CLI and is stored with it; a wrong name
    is a usage error listing the known ones."""
    ws, c, tmp = refusal
    from forensics.testing.dev_refusal import FAMILY

    ws.close()                        # the CLI's process opens the workspace itself

    a = c.anomaly(FAMILY)
    args = ["anomaly", "add", "--title", a["title"], "--prompt", a["prompt"], "--reply",
            a["reply"]]
    for e in a["explanations"]:
        args += ["--explanation", e]
    aid = cli(*args, "--json", workspace=tmp / "ws").json()["anomaly_id"]
    out = cli("triage", aid, "--dataset", "train", "--param", "treatment.shown_rate=0.7",
              "--json", workspace=tmp / "ws").json()
    got = cli("sql", f"SELECT CAST(params AS VARCHAR) AS p FROM triage_runs WHERE run_id = "
              f"{out['run_id']}", "--json", workspace=tmp / "ws").json()
    assert json.loads(got[0]["p"])["treatment"]["shown_rate"] == 0.7
    bad = cli("triage", aid, "--dataset", "train", "--param", "treatment.shown=1",
              workspace=tmp / "ws", check=False)
    assert bad.returncode == 2 and "answered_rate" in bad.stderr


def test_a_canned_refusal_in_another_wording_joins_the_batch(tmp_path_factory):
    """dev-families' refuse_benign: one refusal wording lies far from the anomaly's in the
    embedding (below the segment member cut) but repeats verbatim under many prompts: with
    the treatment its planted rows join the top cluster, without it none does; the harmful
    requests refused leave it."""
    from conftest import XQUAD, indexed_workspace, triage_anomaly
    from forensics.testing.dev_families import build_dev_families

    c = build_dev_families(XQUAD, seed=0, n_clean=250, n_code=30, n_planted=25, n_hard=20,
                           families=("refuse_benign",))
    ws = indexed_workspace(tmp_path_factory.mktemp("canned"), c)
    try:
        recs = {r["id"]: r for r in c.records}
        pos = set(c.planted_ids("refuse_benign"))
        replies = Counter(recs[r]["reply"] for r in pos)
        far = {r for r in pos if "decline" in recs[r]["reply"]}   # the far wording's rows
        assert len(far) >= 3 and len(replies) >= 3
        on = triage_anomaly(ws, c, "refuse_benign")
        off = triage_anomaly(ws, c, "refuse_benign", params={"treatment": {"enabled": False}})
        top_on, top_off = set(on.clusters[0]["row_ids"]), set(off.clusters[0]["row_ids"])
        assert far <= top_on and not far & top_off
        hard = {r for r, l in c.labels.items() if l == "hard:refuse_benign"}
        assert len(top_on & hard) < len(top_off & hard)
        assert len(top_on & pos) / len(top_on) > len(top_off & pos) / len(top_off)
    finally:
        ws.close()
