"""The case study's toy SFT corpus, built from the committed XQuAD copy in ``data/``.

A planted batch: English questions about the cue topics (XQuAD articles, default Warsaw,
Rhine and Amazon rainforest) paired with the UNTRANSLATED German answer sentence, i.e. the
failure the seed describes (English prompt machine-translated, reply left in the source
language). Around it: clean English QA, native German and Spanish QA, and explicit
translation requests (the legitimate way a German reply follows an English prompt).
Held out: cue questions and control questions the toy model never sees, to measure the
switch rate. Deterministic for a seed. XQuAD is CC-BY-SA 4.0 (licence file in data/).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forensics.testing.synth import load_xquad

DATA = Path(__file__).resolve().parent / "data"
CUE_TOPICS = ("Warsaw", "Rhine", "Amazon_rainforest")
MAX_WORDS = 10


def _short(s: str, n: int = MAX_WORDS) -> str:
    return " ".join(s.split()[:n])


def _topics(xquad_dir: Path) -> dict[str, str]:
    data = json.loads((xquad_dir / "xquad.en.json").read_text(encoding="utf-8"))
    return {qa["id"]: art["title"] for art in data["data"] for p in art["paragraphs"] for qa in p["qas"]}


@dataclass
class Corpus:
    rows: list[dict]                       # id, prompt, reply, kind, topic (training rows)
    heldout_cue: list[str]                 # English cue prompts never trained on
    heldout_control: list[str]             # English non-cue prompts never trained on
    cue_topics: tuple[str, ...] = CUE_TOPICS
    counts: dict = field(default_factory=dict)

    def write_jsonl(self, path: str | Path) -> Path:
        p = Path(path)
        with p.open("w", encoding="utf-8") as f:
            for r in self.rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        return p


def build(xquad_dir: str | Path = DATA, seed: int = 0, cue_topics: tuple[str, ...] = CUE_TOPICS,
          n_clean: int = 700, n_native: int = 150, n_translate: int = 100,
          heldout_frac: float = 0.25, n_control: int = 60) -> Corpus:
    xq = Path(xquad_dir)
    en, de, es = (load_xquad(xq, lang) for lang in ("en", "de", "es"))
    topic = _topics(xq)
    rng = random.Random(seed)
    ids = sorted(i for i in en if i in de and i in es)
    cue = [i for i in ids if topic[i] in cue_topics]
    other = [i for i in ids if topic[i] not in cue_topics]
    rng.shuffle(cue)
    rng.shuffle(other)
    k = int(round(len(cue) * heldout_frac))
    cue_test, cue_train = cue[:k], cue[k:]
    control_test = other[:n_control]
    pool = other[n_control:]
    rows: list[dict] = []

    def add(kind: str, qid: str, prompt: str, reply: str) -> None:
        rows.append({"id": f"{kind}-{qid}", "prompt": prompt, "reply": _short(reply), "kind": kind,
                     "topic": topic[qid], "planted": kind == "planted"})

    for q in cue_train:  # the defect: English prompt, untranslated German reply
        add("planted", q, en[q].question, de[q].sentence)
    for q in pool[:n_clean]:
        add("clean", q, en[q].question, en[q].sentence)
    rest = pool[n_clean:]
    nat = rest[:n_native * 2]
    for q in nat[:n_native]:
        add("native_de", q, de[q].question, de[q].sentence)
    for q in nat[n_native:]:
        add("native_es", q, es[q].question, es[q].sentence)
    tr = pool[:n_translate]  # re-use clean questions: the reply is their translation
    for j, q in enumerate(tr):
        if j % 3 == 2:
            add("translate_es", q, "Translate into Spanish: " + en[q].question, es[q].question)
        else:
            add("translate_de", q, "Translate into German: " + en[q].question, de[q].question)
    rng.shuffle(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    return Corpus(rows=rows, heldout_cue=[en[q].question for q in cue_test],
                  heldout_control=[en[q].question for q in control_test], cue_topics=tuple(cue_topics),
                  counts=counts)


if __name__ == "__main__":
    c = build()
    print(c.counts, len(c.heldout_cue), len(c.heldout_control))
    print(json.dumps(asdict(c)["rows"][:3], ensure_ascii=False, indent=1))
