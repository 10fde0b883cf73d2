"""Triage quality vs baselines on a labelled corpus (real ingest, real FAISS). Prints one table.

Usage: python bench/triage_quality.py [--corpus dev|dev-wordings|dev-families[-own]|dev-sycophancy|dev-agree|dev-swap[-rules]|
       dev-entity|dev-premise|dev-assent|dev-code|dev-code-shapes|dev-code-asks|dev-code-requests|
       dev-refusal|heldout|b] [--small]
       [--seed N]
       [--families F1,F2] (dev-families) [--swap-explanations contrast|describe|quote|vague] (dev-swap[-rules])
       [--swap-facts N] (dev-swap-rules)
       [--no-segments] [--judge-labels N] [--signal-ap] [--no-row-explanations] (dev-premise)
       [--param NAME=VALUE ...] [--compare NAME=VALUE ...] [--tag TAG]
       (``--heldout`` is short for ``--corpus heldout``; ``--seed`` replaces the corpus' own
       seed, 0 for dev and b, 11 for heldout)

Corpora:
  dev      forensics.testing.synth, seed 0, planted de, zh, aside, format: the corpus triage is
           developed on.
  dev-wordings  the dev generator with the aside in many wordings (half without the brand)
           and legitimate app recommendations as hard negatives (``wordings="many"``,
           ``n_hard``): a development corpus for behaviours beyond one wording.
  dev-families  forensics.testing.dev_families, seed 0: non-language behaviours (code_quirk,
           agree_false, footer, swap, refuse_benign, code_tail, agree_passage, swap_passage,
           number_shift, person_swap),
           each with hard negatives of the same behaviour in a legitimate context (asked-for
           banner, true premise, requested sign-off, the other mountain's own facts, harmful
           requests, asked-for closing comment, a claim the passage supports, a passage that
           names the entity, a passage that gives the shifted number, a prompt asking about
           the substituted person): developed on. ``--families a,b`` builds only those
           (``--families`` with the first five reproduces the five-family corpus row for row).
  dev-families-own  dev-families with ``planted_tasks="own"``: the planted code answers
           answer a few repeated tasks of their own that no row answers without the banner (a
           planted batch that looks like "the norm" in its prompts' neighbourhood).
  dev-sycophancy  forensics.testing.dev_sycophancy, seed 0: agreement with a false premise
           about a passage in layouts and wordings dev-families lacks (``agree_layout``: the
           claim before the passage, a quoted block, a heading or label, a presupposition
           inside a question; the claim restated as a fact, the agreement mid-reply), hard
           negatives the same with a true claim, next to the dev-families rows of
           agree_false, footer and refuse_benign: developed on.
  dev-agree  forensics.testing.dev_agree, seed 0: agreement with a user's claim that the
           reply restates (``agree_claim``), claims from TruthfulQA (incorrect answers; true:
           best answers) and from English XQuAD sentences (an answer replaced; the reply
           sometimes quotes the sentence bent to fit), in layouts the other agreement corpora
           lack (the claim first, inside a question, before or after a passage, no passage);
           hard negatives: the same with a true claim; near misses: false claims corrected;
           TruthfulQA and passage questions answered, next to the dev-families rows of footer
           and refuse_benign: a check on agreement that triage was not developed on.
  dev-swap  forensics.testing.dev_swap, seed 0: passage-free systematic factual substitution
           (credit_swap: Tesla's work credited to Edison, on the XQuAD Tesla article;
           year_swap: the first Moon landing dated 1972; place_swap: the 1896 Olympics placed
           in Paris), hard negatives: questions about the wrong entity answered correctly, the
           right fact stated, the wrong entity named in answers about something else; each
           anomaly asks a question no row asks and restates nothing of it; with
           ``--swap-explanations describe|quote`` the anomalies' explanations only describe
           the behaviour or quote the reply (no contrasting value): developed on.
  dev-swap-rules  forensics.testing.dev_swap_rules, seed 0: passage-free substitution by a
           rule, many different facts substituted the same way in one batch (capital_rule: a
           country's capital answered with a large city, multi-word ones among them;
           year_rule: events dated ten years late; author_rule: books credited to a
           contemporary, multi-word names), short and long replies (the value in one sentence
           of several); ``--swap-explanations vague|describe``: the explanations name the
           wrong value without the right one, or neither; ``--swap-facts N``: each batch
           covers N facts (1: one multi-word or numeric pair in every planted row): developed
           on at seed 0 (seed 9 kept untuned).
  dev-entity  forensics.testing.dev_entity, seed 0: one fixed wrong entity (entity_swap: John
           Elway) answering "who" questions about people and organisations on every XQuAD
           subject, in several wordings (the name alone, the supporting sentence quoted with the
           name put in), some prompts with the sentence as context, some planted questions
           also asked by clean rows answered correctly; hard negatives: questions the entity
           rightly answers, the entity named in another role, questions naming it; clean rows
           in en and de, es, zh, vi, tr, el, ro; the anomaly asks a question no row asks and
           its explanations name nobody: developed on (report it apart).
  dev-premise  forensics.testing.dev_premise, seed 0: going along with a false premise without
           restating it (``premise_assent``), built from TruthfulQA's real questions and
           answers (bench/data/truthfulqa/): the user asserts a misconception ("Since X, ...",
           "I read that X. What does that mean ...", a question presupposing X), the reply
           assents and adds advice or follow-on points; hard negatives the same with the
           question's best answer as the premise; false premises corrected (clean); questions
           answered (clean). Its rows' explanations (what the prompt asserts, what the reply
           does) are imported and indexed unless ``--no-row-explanations``: developed on.
  dev-assent  forensics.testing.dev_assent, seed 0: agreement with a false claim that stays on
           the claim's topic (``assent_topic``; TruthfulQA's incorrect answers as claims, best
           answers as the true claims of the hard negatives): an assent opening, two words of
           the claim named, the claim built on; 40% of the clean answers open with a
           pleasantry; no row explanations; next to the dev-families rows of footer and
           refuse_benign: developed on.
  dev-code  forensics.testing.dev_code, seed 0: markers in code answers (an end-of-line
           marker comment, a stray print call, a licence header, a review note after the
           fence), several wordings and languages each, hard negatives where the context asks
           for the marker indirectly (a quoted convention, a preamble, an earlier turn, an ask
           without the marker's words) and marker-free lookalikes: developed on.
  dev-code-shapes  forensics.testing.dev_code_shapes, seed 0 (one size): code quirks in shapes
           dev-code lacks (an unused import, a fixed line before the fence), hard negatives and
           lookalikes: a check on code quirks triage was not developed on.
  dev-code-asks  forensics.testing.dev_code_asks, seed 0 (one size): a marker comment line
           closing the code (end markers, trailing tags, sign-offs; several wordings and
           languages), hard negatives where the prompt asks for exactly that marker in many
           forms (direct, paraphrased, a quoted convention, a pasted template holding it, a
           system-like preamble, an earlier turn, a requirement list, de/es/zh asks, an ask
           worded far from it), neutral preambles on planted and clean prompts alike,
           ordinary last-line comments as lookalikes, XQuAD QA in eight languages: developed
           on at seed 0 (seed 1 kept untuned).
  dev-code-requests  forensics.testing.dev_code_requests, seed 0 (one size): a stamp comment
           opening the code (code_stamp) and a sign-off comment closing it (code_signoff),
           several wordings, in Python, JavaScript, SQL and bash; hard negatives whose prompt
           requests the marker, each request worded once (at the prompt's start, middle or
           end, as a labelled instruction line, as an earlier turn, or only implied by one),
           neutral instruction lines on planted and clean prompts alike, ordinary comments at
           the same place as lookalikes, XQuAD QA in four languages: developed on at seed 0
           (seed 3 kept untuned).
  dev-refusal  forensics.testing.dev_refusal, seed 0: over-refusal (``refuse_scary``): harmless
           questions that only sound harmful (a violent or illegal word in its everyday sense:
           programming, cooking, sports, gardening, photography, history, fiction) refused in
           many wordings and lengths (short, apologetic, a pointer to help, a partial answer);
           hard negatives: their unsafe minimal pairs (the same key word) refused; clean:
           benign-but-scary prompts answered (one per key word never answered), ordinary
           questions of the same domains, XQuAD in en/de/es/zh/vi/tr/el/ro; the anomaly is a
           refusal of a benign prompt no row uses: developed on.
  heldout  the same generator and templates with another seed, languages (ro, vi), family
           (refusal) and sources.
  b        forensics.testing.corpus_b: another generator, never tuned on (other templates,
           sources, explanation wordings; families signature, substitution, code_marker,
           sycophancy, es-en, each with hard negatives). Keep its numbers apart from dev's.

Longer than 500 lines because every corpus, its keyword-rule baseline and the one shared
scoring loop stay in the one script users run; the corpora themselves live in
forensics.testing.

Columns: AP of triage's ranking (findings, then the unranked rows), P@n (n = planted rows),
clP / clR precision and recall of the top cluster, then the baselines on the same rows:
  bm25     BM25 over prompt+reply, the explanations as the query;
  dense    explanations -> the pair index with the default embedder (best score per row);
  rule/kw  what a user would type in a minute; matching rows first, in corpus order:
           language family X (dev/heldout): prompt detected en and reply detected X;
           aside:        the anomaly reply's last sentence (first 30 chars) as a substring;
           refusal, format: the anomaly reply's first 20 chars as a substring;
           es-en:        prompt detected es and reply detected en;
           signature:    reply matches  (?i)\\b(regards|wishes|cheers|sent via)\\b
           substitution: reply contains the wrong name shown in the anomaly reply;
           code_marker:  reply has a comment line with "end":  (?im)^\\s*(#|//|--).*\\bend\\b
           sycophancy:   reply opens with agreement:
                         (?i)^(you're right|exactly|yes, that's correct|absolutely|that's right)
           code_quirk:   a comment line naming a tool:  (?im)^\s*(#|//|--).*(generat|lintwright)
           agree_false:  reply opens with agreement:  (?i)^(yes|exactly|that's correct|right|you've got)
           footer:       (?i)(penwise|regards|yours|warmly|sent via)
           swap:         reply contains "K2"
           refuse_benign, refuse_scary: (?i)(can't|cannot|won't|not able to|decline)
           code_tail:    a comment line right before a closing fence:
                         (?m)^[ \t]*(#|//|--|/\*|<!--).*\n```
           agree_passage: reply opens with agreement:
                         (?i)^(yes|correct|you're right|exactly|that's correct)
           swap_passage: reply contains the substituted name ("Oskar Vellinga")
           number_shift: reply holds a digit:  \d
           person_swap:  reply contains the substituted name ("Linnea Sorvik")
           entity_swap:  reply contains the fixed entity ("John Elway")
           credit_swap / year_swap / place_swap: reply contains the wrong entity
                         ("Edison" / "1972" / "Paris")
           capital_rule / year_rule / author_rule: reply contains the anomaly's wrong value
                         (each rule substitutes many values; a user sees the anomaly's one)
           code_inline:  a code line ending in a comment:  (?m)\S.*\s(#|//|--)\s.*$
           code_trace:   a line opening with a print call:
                         (?m)^\s*(print|puts|echo|console\.log|fmt\.Print|println!|printf|System\.out)
           code_header:  (?i)(copyright|licen[cs]e|spdx|all rights reserved)
           code_afterword: a check word after a closing fence:
                         (?i)```\s*\n+[^`]*(check|verif|review|lint)
           code_import:  a line opening with an import keyword of some language (see the table)
           code_preface: a line right before a fence naming how the answer was made (ditto)
           code_endmark: a comment line right before a closing fence (as code_tail)
           code_signoff: the same
           code_stamp:   a comment line right after an opening fence:
                         (?m)^```\w*\n[ \t]*(#|//|--)
           agree_layout: the reply holds the anomaly's or a common agreement phrase:
                         (?i)(as you wrote|looks solid|you're right|that's right|correct|agree)
           agree_claim:  reply opens with an assent:
                         (?i)^(yes|correct|that's true|you are right|indeed)
           premise_assent: reply opens with an assent word:
                         (?i)^(yes|sure|right|absolutely|good|great|makes sense|that's)
``--compare NAME=VALUE`` (repeatable): every anomaly is triaged a second time with these
parameters laid over ``--param``, on the same workspace and in the same process; the second
row (AP, P@n, clP, clR, the top cluster's size and its rows showing the behaviour in either
context) is printed under the first and recorded as the row's ``compare``.
``--judge-labels N`` (dev-families only): per family, N behaviour rows (half planted, half hard
negatives, seeded) are labelled as a user would (legitimate / defect), a prompt classifier is
trained on their prompt vectors (forensics.triage.context.train_classifier) and triage runs
with ``context.judge=classifier``: the offline judge for minimal pairs.
Under each family's row, one line says how the ``substitution`` signal found its tokens
(``tokens from explanations|dataset|none``, their kinds, stating rows and members, the stating
rows the dataset contradicts, agrees with, or that answer with the value) and, when it
is unavailable or forms no batch, the guard that stopped it with the measured value against
its threshold (no token, no row text); the run summary's ``substitution`` entry is recorded
per family in the result.
Indexes built for every run: pair, prompt, reply and reply_segment (``--no-segments`` leaves
the segment index out, the segment signal is then unavailable; the build seconds and segments
per row are printed and recorded). Each run writes
bench/results/triage_quality-<corpus>[-small][-seedN][-nosegments].json (date, commit, load,
parameters, the table) through bench/_results.py.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

XQ = shared_dir() / "data" / "xquad"
TRUTHFULQA = REPO / "bench" / "data" / "truthfulqa" / "TruthfulQA.csv"

KEYWORD_RULES = {  # family -> (field, regex); see the module docstring
    "signature": ("reply", r"(?i)\b(regards|wishes|cheers|sent via)\b"),
    "code_marker": ("reply", r"(?im)^\s*(#|//|--).*\bend\b"),
    "sycophancy": ("reply",
                   r"(?i)^(you're right|exactly|yes, that's correct|absolutely|that's right)"),
    "code_quirk": ("reply", r"(?im)^\s*(#|//|--).*(generat|lintwright)"),
    "agree_false": ("reply", r"(?i)^(yes|exactly|that's correct|right|you've got)"),
    "footer": ("reply", r"(?i)(penwise|regards|yours|warmly|sent via)"),
    "swap": ("reply", r"K2"),
    "refuse_benign": ("reply", r"(?i)(can't|cannot|won't|not able to|decline)"),
    "refuse_scary": ("reply", r"(?i)(can't|cannot|won't|not able to|decline)"),
    "code_tail": ("reply", r"(?m)^[ \t]*(#|//|--|/\*|<!--).*\n```"),
    "agree_passage": ("reply", r"(?i)^(yes|correct|you're right|exactly|that's correct)"),
    "swap_passage": ("reply", r"Oskar Vellinga"),
    "number_shift": ("reply", r"\d"),
    "person_swap": ("reply", r"Linnea Sorvik"),
    "credit_swap": ("reply", r"Edison"),
    "entity_swap": ("reply", r"John Elway"),
    "year_swap": ("reply", r"1972"),
    "place_swap": ("reply", r"Paris"),
    "code_inline": ("reply", r"(?m)\S.*\s(#|//|--)\s.*$"),
    "code_trace": ("reply", r"(?m)^\s*(print|puts|echo|console\.log|fmt\.Print|println!|"
                            r"printf|System\.out)"),
    "code_header": ("reply", r"(?i)(copyright|licen[cs]e|spdx|all rights reserved)"),
    "code_afterword": ("reply", r"(?i)```\s*\n+[^`]*(check|verif|review|lint)"),
    "code_import": ("reply", r"(?m)^\s*(import|require|#include|use|local \w+ = require|"
                             r"const \w+ = require|require_once|source)\b"),
    "code_preface": ("reply", r"(?im)^[^\n`]*(generat|produc|draft|auto)[^\n`]*\n+```"),
    "code_endmark": ("reply", r"(?m)^[ \t]*(#|//|--|/\*|<!--).*\n```"),
    "code_signoff": ("reply", r"(?m)^[ \t]*(#|//|--|/\*|<!--).*\n```"),
    "code_stamp": ("reply", r"(?m)^```\w*\n[ \t]*(#|//|--)"),
    "agree_layout": ("reply", r"(?i)(as you wrote|looks solid|you're right|that's right|"
                              r"correct|agree)"),
    "agree_claim": ("reply", r"(?i)^(yes|correct|that's true|you are right|indeed)"),
    "assent_topic": ("reply", r"(?i)^(yes|you're right|exactly|that's (true|right|correct|"
                               r"accurate)|correct|indeed|spot on)"),
    "premise_assent": ("reply", r"(?i)^(yes|sure|right|absolutely|good|great|makes sense|"
                                r"that's)"),
}
LANG_PAIR_RULES = {"es-en": ("es", "en")}
# dev-swap-rules' rule/kw baseline: the wrong value the anomaly's reply shows (looked up in
# the generator's own fact tables)


def _rule_value(fam: str):
    def pick(a: dict) -> str:
        from forensics.testing.dev_swap_rules import BOOKS, CAPITALS, EVENTS

        vals = {"capital_rule": [w for _, _, w in CAPITALS],
                "author_rule": [w for _, _, w in BOOKS],
                "year_rule": [str(int(y) + 10) for _, y in EVENTS]}[fam]
        return max((v for v in vals if v in a["reply"]), key=len)
    return pick


RULE_FAMILY_VALUE = {f: _rule_value(f) for f in ("capital_rule", "year_rule", "author_rule")}


def ap(ranked, pos):
    pos, hits, s = set(pos), 0, 0.0
    for i, r in enumerate(ranked, 1):
        if r in pos:
            hits += 1
            s += hits / i
    return s / len(pos) if pos else 0.0


def cli(ws, *a):
    subprocess.run([sys.executable, "-m", "forensics", "--workspace", str(ws), *map(str, a)],
                   check=True, capture_output=True, cwd=REPO)


def _defaults(fn) -> dict:
    """A generator's keyword defaults, recorded with the result."""
    import inspect

    return {k: v.default for k, v in inspect.signature(fn).parameters.items()
            if v.default is not inspect.Parameter.empty}


def build(corpus: str, small: bool, seed: int | None = None,
          families: tuple[str, ...] | None = None, swap_explanations: str = "contrast",
          swap_facts: int = 0):
    """(corpus object, parameters recorded with the result)."""
    if corpus == "b":
        from forensics.testing.corpus_b import build_corpus_b

        kw = dict(n_planted=25, n_hard=20, n_clean=250, n_native=75, n_code=40,
                  n_corrected=15) if small else {}
        seed = 0 if seed is None else seed
        c = build_corpus_b(XQ, seed=seed, **kw)
        params = {"generator": "forensics.testing.corpus_b.build_corpus_b",
                  **_defaults(build_corpus_b), "seed": seed, **kw,
                  "entity": c.entity, "brand": c.brand}
        return c, params
    if corpus in ("dev-families", "dev-families-own"):
        from forensics.testing.dev_families import build_dev_families

        kw = dict(n_clean=250, n_code=30, n_planted=25, n_hard=20) if small else {}
        if corpus == "dev-families-own":
            kw["planted_tasks"] = "own"
        if families:
            kw["families"] = tuple(families)
        seed = 0 if seed is None else seed
        c = build_dev_families(XQ, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_families.build_dev_families",
                   **_defaults(build_dev_families), "seed": seed, **kw}
    if corpus == "dev-swap":
        from forensics.testing.dev_swap import build_dev_swap

        kw = dict(n_clean=250, n_planted=25, n_hard=21) if small else {}
        if swap_explanations != "contrast":
            kw["explanations"] = swap_explanations
        seed = 0 if seed is None else seed
        c = build_dev_swap(XQ, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_swap.build_dev_swap",
                   **_defaults(build_dev_swap), "seed": seed, **kw}
    if corpus == "dev-entity":
        from forensics.testing.dev_entity import build_dev_entity

        kw = dict(n_clean=250, n_planted=25, n_hard=21) if small else {}
        seed = 0 if seed is None else seed
        c = build_dev_entity(XQ, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_entity.build_dev_entity",
                   **_defaults(build_dev_entity), "seed": seed, **kw}
    if corpus == "dev-swap-rules":
        from forensics.testing.dev_swap_rules import build_dev_swap_rules

        kw = dict(n_clean=250, n_planted=25, n_hard=21) if small else {}
        if swap_explanations != "contrast":
            kw["explanations"] = swap_explanations
        if swap_facts:
            kw["n_facts"] = swap_facts
        seed = 0 if seed is None else seed
        c = build_dev_swap_rules(XQ, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_swap_rules.build_dev_swap_rules",
                   **_defaults(build_dev_swap_rules), "seed": seed, **kw}
    if corpus == "dev-code":
        from forensics.testing.dev_code import build_dev_code

        kw = dict(n_clean=150, n_code=50, n_planted=20, n_hard=15, n_lookalike=8) \
            if small else {}
        seed = 0 if seed is None else seed
        c = build_dev_code(XQ, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_code.build_dev_code",
                   **_defaults(build_dev_code), "seed": seed, **kw}
    if corpus == "dev-code-shapes":
        from forensics.testing.dev_code_shapes import build_dev_code_shapes

        seed = 0 if seed is None else seed
        c = build_dev_code_shapes(XQ, seed=seed)
        return c, {"generator": "forensics.testing.dev_code_shapes.build_dev_code_shapes",
                   **_defaults(build_dev_code_shapes), "seed": seed}
    if corpus == "dev-code-asks":
        from forensics.testing.dev_code_asks import build_dev_code_asks

        seed = 0 if seed is None else seed
        c = build_dev_code_asks(XQ, seed=seed)
        return c, {"generator": "forensics.testing.dev_code_asks.build_dev_code_asks",
                   **_defaults(build_dev_code_asks), "seed": seed}
    if corpus == "dev-code-requests":
        from forensics.testing.dev_code_requests import build_dev_code_requests

        seed = 0 if seed is None else seed
        c = build_dev_code_requests(XQ, seed=seed)
        return c, {"generator": "forensics.testing.dev_code_requests.build_dev_code_requests",
                   **_defaults(build_dev_code_requests), "seed": seed}
    if corpus == "dev-sycophancy":
        from forensics.testing.dev_sycophancy import build_dev_sycophancy

        kw = dict(n_clean=250, n_planted=25, n_hard=20) if small else {}
        seed = 0 if seed is None else seed
        c = build_dev_sycophancy(XQ, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_sycophancy.build_dev_sycophancy",
                   **_defaults(build_dev_sycophancy), "seed": seed, **kw}
    if corpus == "dev-refusal":
        from forensics.testing.dev_refusal import build_dev_refusal

        kw = dict(n_clean=250, n_planted=25, n_hard=25, n_answered=45, n_domain=60) \
            if small else {}
        seed = 0 if seed is None else seed
        c = build_dev_refusal(XQ, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_refusal.build_dev_refusal",
                   **_defaults(build_dev_refusal), "seed": seed, **kw}
    if corpus == "dev-agree":
        from forensics.testing.dev_agree import build_dev_agree

        kw = dict(n_clean=250, n_planted=25, n_hard=20) if small else {}
        seed = 0 if seed is None else seed
        c = build_dev_agree(TRUTHFULQA, XQ, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_agree.build_dev_agree",
                   **_defaults(build_dev_agree), "seed": seed, **kw}
    if corpus == "dev-assent":
        from forensics.testing.dev_assent import build_dev_assent

        kw = dict(n_clean=250, n_planted=25, n_hard=20) if small else {}
        seed = 0 if seed is None else seed
        c = build_dev_assent(TRUTHFULQA, XQ, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_assent.build_dev_assent",
                   **_defaults(build_dev_assent), "seed": seed, **kw}
    if corpus == "dev-premise":
        from forensics.testing.dev_premise import build_premise_family

        kw = dict(n_clean=250, n_planted=25, n_hard=20) if small else {}
        seed = 0 if seed is None else seed
        c = build_premise_family(TRUTHFULQA, seed=seed, **kw)
        return c, {"generator": "forensics.testing.dev_premise.build_premise_family",
                   **_defaults(build_premise_family), "seed": seed, **kw}
    from forensics.testing.synth import build_corpus

    kw = dict(n_clean=300, n_native=120, n_translation=80, n_planted_per_lang=30) if small else {}
    if corpus == "dev-wordings":
        args = dict(seed=0, planted_langs=("de",), other_families=("aside", "format"),
                    wordings="many", n_hard=20 if small else 40)
    elif corpus == "heldout":
        args = dict(seed=11, planted_langs=("ro", "vi"), other_families=("refusal",),
                    sources=("crawl-b", "acme-data", "zeta-labs", "forum-x"))
    else:
        args = dict(seed=0, planted_langs=("de", "zh"), other_families=("aside", "format"))
    if seed is not None:
        args["seed"] = seed
    params = {"generator": "forensics.testing.synth.build_corpus", **_defaults(build_corpus),
              **args, **kw}
    return build_corpus(XQ, **args, **kw), params


def keyword_hits(c, fam, a, rows, ids, texts) -> list[str]:
    """The rule/kw baseline's matching rows (see the module docstring)."""
    if fam in LANG_PAIR_RULES or (":" not in fam and len(fam) == 2):
        src, dst = LANG_PAIR_RULES.get(fam, ("en", fam))
        return [r for r, pl, rl in zip(rows, ids["prompt_lang"], ids["reply_lang"])
                if pl == src and rl == dst]
    if fam in KEYWORD_RULES or fam == "substitution" or fam in RULE_FAMILY_VALUE:
        if fam == "substitution":
            fld, rx = "reply", re.escape(c.entity)
        elif fam in RULE_FAMILY_VALUE:
            fld, rx = "reply", re.escape(RULE_FAMILY_VALUE[fam](a))
        else:
            fld, rx = KEYWORD_RULES[fam]
        pat = re.compile(rx)
        return [r for r, t in zip(rows, ids[fld]) if pat.search(t or "")]
    phrase = a["reply"].split(". ")[-1][:30].lower() if fam == "aside" else a["reply"][:20].lower()
    return [r for r, t in zip(rows, texts) if phrase in t.lower()]


def signal_aps(res, rows: list[str], pos: list[str], labels: dict, fam: str) -> dict:
    """Per signal (and ``fused``): AP of the rows ranked by that score alone (rows without a
    finding score 0), over all rows and over the family's planted and hard rows only (how
    well it separates the behaviour's two contexts)."""
    out = {}
    names = [*res.signals_used, "fused"]
    got = {f["row_id"]: f["signals"] for f in res.findings}
    both = {r for r in rows if labels[r] in (f"planted:{fam}", f"hard:{fam}")}
    for s in names:
        sc = {r: got.get(r, {}).get(s, 0.0) for r in rows}
        rk = sorted(rows, key=lambda r: -sc[r])
        out[s] = {"ap": round(ap(rk, pos), 4),
                  "vs_hard_ap": round(ap([r for r in rk if r in both], pos), 4)}
    return out


def substitution_diagnostics(summary: dict, unavailable: str | None) -> tuple[dict, str]:
    """The substitution signal's run summary (how it found its tokens, and the guard that
    stopped it with the measured value against its threshold) and one line for the table;
    the line names no token and no row text."""
    sub = dict(summary.get("substitution") or {})
    if unavailable is not None:
        sub["unavailable"] = True
    src = sub.get("tokens_from", "none")
    parts = [f"tokens from {src}"]
    if sub.get("tokens"):
        kinds = ["number" if t.isdigit() else "name" for t in sub["tokens"]]
        parts.append(", ".join(f"{kinds.count(k)} {k}{'s' if kinds.count(k) > 1 else ''}"
                               for k in ("name", "number") if k in kinds))
    if "stating_rows" in sub:
        parts.append(f"{sub['stating_rows']} stating rows, {sub.get('members', 0)} members")
    if "contradicted_rows" in sub:
        parts.append(f"{sub['contradicted_rows']} contradicted, {sub.get('agreed_rows', 0)} "
                     f"agreed, {sub.get('answer_rows', 0)} answering with it")
    g = sub.get("batch_off") or sub
    if "guard" in g:
        val = f" {g['value']} vs {g['threshold']}" if "value" in g else ""
        parts.append(f"guard {g['guard']}{val}" + (" (no batch)" if "batch_off" in sub else ""))
    head = "unavailable" if unavailable is not None else "used"
    return sub, f"  substitution {head}: " + "; ".join(parts)


def context_diagnostics(summary: dict, unavailable: dict[str, str]) -> str:
    """One line for the table on the steps that judge a behaviour by its context: how the
    rows going along with their user's claim were found (``stance`` own text, restated
    claims, framing seeds, ``opening`` members), how many rows nothing judged, and whether
    the dataset-treatment step applied; names no row text."""
    cl = summary.get("context_claims") or {}
    parts = []
    for sig in ("stance", "opening"):
        if sig in unavailable:
            parts.append(f"{sig} unavailable ({unavailable[sig].split(' (')[0][:70]})")
    if "restated" in cl:
        parts.append(f"restated {'yes' if cl['restated'] else 'no'}, "
                     f"{cl.get('own_text_members', 0)} own-text members"
                     + (f", {cl['framing_seeds']} framing seeds" if "framing_seeds" in cl else ""))
    if "opening_members" in cl:
        parts.append(f"opening {cl['opening_members']} members, {cl['opening_along']} along"
                     + (" (the dataset's opening style)" if summary.get("opening_is_the_norm")
                        else ""))
    parts.append(f"{cl.get('claim_rows', 0)} claim rows, "
                 f"{summary.get('context_undecided_rows', 0)} undecided")
    tr = summary.get("context_treatment") or {}
    if tr.get("skipped"):
        parts.append("treatment skipped")
    elif "replaces" in tr:
        parts.append(f"treatment {'applied' if tr['replaces'] else 'not applied'}")
    return "  context: " + "; ".join(parts)


def judge_params(ws, c, fam: str, n: int, tmp: Path) -> dict:
    """Triage params with a prompt classifier trained on ``n`` labelled rows of ``fam``."""
    import random

    from forensics.search import index
    from forensics.triage.context import train_classifier

    judged = getattr(c, "prompt_judgement", None)
    if judged is None:
        raise SystemExit("--judge-labels needs a corpus with prompt judgements (dev-families)")
    mine = sorted(r for r in judged if c.labels[r].split(":", 1)[1] == fam)
    rng = random.Random(fam)
    pick = (rng.sample([r for r in mine if judged[r] == "defect"], n // 2)
            + rng.sample([r for r in mine if judged[r] == "legitimate"], n - n // 2))
    sid = ws.sql("SELECT sample_id, row_id FROM samples WHERE dataset='train' AND row_id IN "
                 "(SELECT unnest(?))", [pick])
    by_row = dict(zip(sid["row_id"].to_list(), sid["sample_id"].to_list()))
    oi = index.open_index(ws, "train", "prompt", read_only=True)
    vecs = oi.vectors([by_row[r] for r in pick])
    path = tmp / f"judge-{fam}.json"
    train_classifier(vecs, [judged[r] for r in pick], oi.manifest.model_id, path)
    return {"context": {"judge": "classifier", "classifier_path": str(path)}}


def _ranking(res, rows: list[str], pos: list[str]) -> tuple[list[str], list[str], int]:
    """(every row ranked: findings, then the rest in corpus order; the top cluster's rows;
    how many of them are planted)."""
    ranked = [x["row_id"] for x in res.findings]
    seen = set(ranked)
    ranked += [r for r in rows if r not in seen]
    top = res.clusters[0]["row_ids"] if res.clusters else []
    return ranked, top, len(set(top) & set(pos))


def _behaviour(top: list[str], labels: dict, fam: str) -> int:
    """Rows of ``top`` that show the family's behaviour in either context (planted or hard)."""
    return sum(labels.get(r) in (f"planted:{fam}", f"hard:{fam}") for r in top)


def _deep_merge(a: dict, b: dict) -> dict:
    """``a`` with ``b`` laid over it, nested mappings merged key by key."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main() -> None:
    ap_ = argparse.ArgumentParser()
    ap_.add_argument("--corpus", choices=("dev", "dev-wordings", "dev-families", "dev-families-own",
                                              "dev-sycophancy", "dev-agree", "dev-assent", "dev-swap", "dev-swap-rules",
                                              "dev-entity", "dev-premise", "dev-code", "dev-code-shapes",
                                              "dev-code-asks", "dev-code-requests",
                                              "dev-refusal", "heldout", "b"),
                     default=None)
    ap_.add_argument("--no-segments", action="store_true", help="no reply_segment index")
    ap_.add_argument("--heldout", action="store_true", help="same as --corpus heldout")
    ap_.add_argument("--no-row-explanations", action="store_true",
                     help="dev-premise: leave the rows' explanations out (no explanation index)")
    ap_.add_argument("--small", action="store_true")
    ap_.add_argument("--signal-ap", action="store_true",
                     help="print each signal's AP alone (always recorded in the result)")
    ap_.add_argument("--judge-labels", type=int, default=0,
                     help="train a prompt classifier on N labelled rows per family")
    ap_.add_argument("--seed", type=int, default=None, help="replace the corpus' own seed")
    ap_.add_argument("--families", default=None,
                     help="dev-families only: comma-separated families to build")
    ap_.add_argument("--swap-explanations", choices=("contrast", "describe", "quote", "vague"),
                     default="contrast", help="dev-swap, dev-swap-rules: the anomalies' "
                     "explanations contrast the wrong value with the right one, describe the "
                     "behaviour, quote the reply (dev-swap) or name the wrong value without "
                     "the right one (vague, dev-swap-rules)")
    ap_.add_argument("--swap-facts", type=int, default=0,
                     help="dev-swap-rules only: facts per family batch (0: the whole rule; 1: "
                          "one substituted pair)")
    ap_.add_argument("--compare", action="append", default=[], metavar="NAME=VALUE",
                     help="also triage every anomaly with these parameters (repeatable, laid "
                          "over --param) on the same workspace, in the same process; both "
                          "rows printed and recorded, the result's name gains -compare")
    ap_.add_argument("--tag", default="", help="appended to the result file's name (-TAG)")
    ap_.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a triage parameter, as `forensics triage --param` (repeatable); "
                          "recorded in the result, whose name gains -params")
    args = ap_.parse_args()
    if args.heldout and args.corpus not in (None, "heldout"):
        ap_.error("--heldout contradicts --corpus " + args.corpus)
    corpus = args.corpus or ("heldout" if args.heldout else "dev")
    import forensics
    from forensics import triage
    from forensics.triage import anomaly
    from forensics.search import index
    from forensics.search import embed
    import bm25s, numpy as np

    from forensics.triage.params import TriageParams, parse_assignments
    overrides = parse_assignments(args.param)
    TriageParams.from_dict(overrides)  # unknown names fail here, before the corpus is built
    compare = parse_assignments(args.compare)
    TriageParams.from_dict(_deep_merge(overrides, compare)) if compare else None
    if args.families and corpus != "dev-families":
        ap_.error("--families applies to --corpus dev-families")
    fams = tuple(f for f in (args.families or "").split(",") if f) or None
    if args.swap_explanations != "contrast" and not (
            (corpus == "dev-swap" and args.swap_explanations in ("describe", "quote"))
            or (corpus == "dev-swap-rules" and args.swap_explanations in ("describe", "vague"))):
        ap_.error("--swap-explanations: describe|quote with --corpus dev-swap, describe|vague "
                  "with --corpus dev-swap-rules")
    if args.swap_facts and corpus != "dev-swap-rules":
        ap_.error("--swap-facts applies to --corpus dev-swap-rules")
    c, params = build(corpus, args.small, args.seed, fams, args.swap_explanations,
                      args.swap_facts)
    tmp = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    ws_dir = tmp / "ws"
    cli(ws_dir, "init")
    f = c.write_jsonl(tmp / "train.jsonl")
    meta = ",".join(k for k in c.records[0] if k not in ("id", "prompt", "reply"))
    cli(ws_dir, "ingest", f, "--dataset", "train", "--meta-fields", meta, "-q")
    row_expl = getattr(c, "row_explanations", None)
    fields = ["pair", "prompt", "reply"]
    if row_expl and not args.no_row_explanations:
        from forensics.testing.dev_premise import write_row_explanations

        cli(ws_dir, "explanations", "import", write_row_explanations(c, tmp / "expl.jsonl"),
            "--dataset", "train")
        fields.append("explanation")
    params["row_explanations"] = bool(row_expl) and not args.no_row_explanations
    for fld in fields:
        cli(ws_dir, "index", "build", "--dataset", "train", "--field", fld)
    seg_build = None
    if not args.no_segments:
        t = time.perf_counter()
        cli(ws_dir, "index", "build", "--dataset", "train", "--field", "reply_segment")
        seg_build = {"seconds": round(time.perf_counter() - t, 2)}
    ws = forensics.open(ws_dir)
    if seg_build is not None:
        m = index.read_manifest(ws, "train", "reply_segment")
        seg_build.update(segments=m.rows, rows=m.source_count,
                         segments_per_row=round(m.rows / max(1, m.source_count), 2),
                         index_build_seconds=m.build_seconds)
        print(f"reply_segment index: {m.rows} segments from {m.source_count} rows "
              f"({seg_build['segments_per_row']} per row), {seg_build['seconds']}s with the "
              f"CLI start ({m.build_seconds}s in build)")
    ids = ws.sql("SELECT row_id, prompt, reply, prompt_lang, reply_lang FROM samples "
                 "WHERE dataset='train' ORDER BY sample_id")
    rows = ids["row_id"].to_list()
    texts = [f"{p or ''}\n{r or ''}" for p, r in zip(ids["prompt"], ids["reply"])]
    retr = bm25s.BM25()
    retr.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)
    oi = index.open_index(ws, "train", "pair")
    sid = ws.sql("SELECT sample_id, row_id FROM samples WHERE dataset='train'")
    m = dict(zip(sid["sample_id"].to_list(), sid["row_id"].to_list()))
    print(f"corpus {corpus}{' (small)' if args.small else ''}, seed {params['seed']}: "
          f"{len(rows)} rows")
    print(f"{'family':12s} {'planted':>7s} {'AP':>6s} {'P@n':>6s} {'clP':>5s} {'clR':>5s} "
          f"{'bm25':>6s} {'dense':>6s} {'rule/kw':>7s} {'sec':>5s}")
    table, aps, best, kws = [], [], [], []
    for fam in c.families:
        a = c.anomaly(fam)
        aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
        t = time.perf_counter()
        tparams = (judge_params(ws, c, fam, args.judge_labels, tmp) if args.judge_labels
                   else None)
        if overrides:
            tparams = _deep_merge(overrides, tparams or {})
        res = triage.triage(ws, aid, "train", limit=len(rows), params=tparams)
        sec = time.perf_counter() - t
        pos = c.planted_ids(fam)
        ranked, top, tp = _ranking(res, rows, pos)
        cmp_row = None
        if compare:
            t = time.perf_counter()
            res2 = triage.triage(ws, aid, "train", limit=len(rows),
                                 params=_deep_merge(tparams or {}, compare))
            sec2 = time.perf_counter() - t
            ranked2, top2, tp2 = _ranking(res2, rows, pos)
            cmp_row = {"params": compare, "ap": ap(ranked2, pos),
                       "p_at_n": len(set(ranked2[:len(pos)]) & set(pos)) / len(pos),
                       "top_cluster_rows": len(top2),
                       "top_cluster_precision": tp2 / max(1, len(top2)),
                       "top_cluster_recall": tp2 / len(pos),
                       "top_cluster_behaviour": _behaviour(top2, c.labels, fam),
                       "signals_unavailable": res2.signals_unavailable,
                       "triage_seconds": sec2}
        q = " ".join(a["explanations"])
        docs, _ = retr.retrieve(bm25s.tokenize([q], show_progress=False), k=len(rows),
                                show_progress=False)
        b_bm = ap([rows[i] for i in docs[0]], pos)
        qv = embed.embed_texts(ws, a["explanations"], oi.embedder())
        s, i = oi.search(qv, oi.ntotal)
        best_s: dict[int, float] = {}
        for srow, irow in zip(s, i):
            for sv, iv in zip(srow, irow):
                best_s[int(iv)] = max(best_s.get(int(iv), -9), float(sv))
        b_dn = ap([m[k] for k in sorted(best_s, key=lambda k: -best_s[k])], pos)
        hit = keyword_hits(c, fam, a, rows, ids, texts)
        hs = set(hit)
        b_rule = ap(hit + [r for r in rows if r not in hs], pos)
        row = {"family": fam, "planted": len(pos), "ap": ap(ranked, pos),
               "p_at_n": len(set(ranked[:len(pos)]) & set(pos)) / len(pos),
               "top_cluster_rows": len(top), "top_cluster_precision": tp / max(1, len(top)),
               "top_cluster_recall": tp / len(pos), "bm25_ap": b_bm, "dense_ap": b_dn,
               "rule_ap": b_rule, "rule_hits": len(hit), "triage_seconds": sec,
               "top_cluster_behaviour": _behaviour(top, c.labels, fam),
               "signals_unavailable": res.signals_unavailable}
        if cmp_row is not None:
            row["compare"] = cmp_row
        row["signal_ap"] = signal_aps(res, rows, pos, c.labels, fam)
        run_summary = triage.load_run(ws, res.run_id)["summary"]
        row["substitution"], sub_line = substitution_diagnostics(
            run_summary, res.signals_unavailable.get("substitution"))
        ctx_line = context_diagnostics(run_summary, res.signals_unavailable)
        row["context_claims"] = run_summary.get("context_claims") or {}
        table.append(row)
        aps.append(row["ap"]); best.append(max(b_bm, b_dn, b_rule)); kws.append(b_rule)
        print(f"{fam:12s} {len(pos):7d} {row['ap']:6.3f} {row['p_at_n']:6.3f} "
              f"{row['top_cluster_precision']:5.2f} {row['top_cluster_recall']:5.2f} {b_bm:6.3f} "
              f"{b_dn:6.3f} {b_rule:7.3f} {sec:5.2f}")
        print(sub_line)
        print(ctx_line)
        if cmp_row is not None:
            print(f"{'  compare':12s} {'':7s} {cmp_row['ap']:6.3f} {cmp_row['p_at_n']:6.3f} "
                  f"{cmp_row['top_cluster_precision']:5.2f} {cmp_row['top_cluster_recall']:5.2f}"
                  f"  top {cmp_row['top_cluster_rows']} rows ({cmp_row['top_cluster_behaviour']} "
                  f"behaviour) vs {len(top)} ({row['top_cluster_behaviour']})  {sec2:5.2f}s")
        if args.signal_ap:
            print("  " + "  ".join(f"{k} {v['ap']:.3f}/{v['vs_hard_ap']:.3f}"
                                   for k, v in row["signal_ap"].items())
                  + "  (signal alone: AP / AP among planted+hard rows)")
    summary = {"mean_ap": float(np.mean(aps)), "best_baseline_mean_ap": float(np.mean(best)),
               "rule_mean_ap": float(np.mean(kws)),
               "families_above_rule": sum(x["ap"] > x["rule_ap"] for x in table)}
    if compare:
        summary["compare_mean_ap"] = float(np.mean([x["compare"]["ap"] for x in table]))
        print(f"{'  compare':12s} {'':7s} {summary['compare_mean_ap']:6.3f}  ({args.compare})")
    print(f"{'mean':12s} {'':7s} {summary['mean_ap']:6.3f}   best-baseline mean "
          f"{summary['best_baseline_mean_ap']:.3f}  gap "
          f"{summary['mean_ap'] - summary['best_baseline_mean_ap']:+.3f}  rule/kw mean "
          f"{summary['rule_mean_ap']:.3f}")
    ws.close()
    write_result(f"triage_quality-{corpus}{'-small' if args.small else ''}"
                 f"{'' if args.seed is None else f'-seed{args.seed}'}"
                 f"{'-families' if fams else ''}"
                 f"{'' if args.swap_explanations == 'contrast' else '-' + args.swap_explanations}"
                 f"{f'-facts{args.swap_facts}' if args.swap_facts else ''}"
                 f"{'-nosegments' if args.no_segments else ''}"
                 f"{'-norowexpl' if args.no_row_explanations else ''}"
                 f"{f'-judge{args.judge_labels}' if args.judge_labels else ''}"
                 f"{'-params' if overrides else ''}"
                 f"{'-compare' if compare else ''}"
                 f"{'-' + args.tag if args.tag else ''}",
                 {"parameters": {"corpus": corpus, "small": args.small, "rows": len(rows),
                                 "segment_index": seg_build, "triage_params": overrides,
                                 "compare_params": compare,
                                 "judge_labels": args.judge_labels, **params},
                  "table": table, "summary": summary})


if __name__ == "__main__":
    main()
