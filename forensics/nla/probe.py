"""Counterfactual probes: change the anomaly's prompt and see whether the behaviour persists.

Why: an NLA explanation says what the model represents ("the user seems Russian"); a probe
says what CAUSES the behaviour. The seed's example: replacing "vodka" with "champagne" still
gave a Russian reply, so the drink word was not the trigger. For each anomaly we regenerate the
target's reply for the original prompt and for variants:

- ``replace:A=B`` - user-given replacements (whole words, case-insensitive);
- ``auto-swap:W=N`` - the most salient words swapped for a same-category neighbour;
- ``drop:W`` - the same words removed.

Salience is measured, not guessed: how much dropping the word changes the target's
next-token distribution at the first reply token (KL divergence). Neighbours are the nearest
vocabulary words in the sentence-embedding space (:mod:`forensics.search.embed`), which puts a drink
next to drinks and a city next to cities. For a language-switch anomaly the behaviour is the
reply's language (:mod:`forensics.language.detect`); results go to the ``probes`` table for SQL.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Sequence

from forensics.errors import InputError
from forensics.progress import Progress, resolve

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = set("""a an the of to in on at for and or but not is are was were be been being what which who whom
whose when where why how that this these those it its with by from as into about than then there their they
them he she his her you your we our i me my do does did done has have had can could would should will shall
may might must also such other more most some any all each many much very""".split())


@dataclass
class ProbeVariant:
    variant: str
    prompt: str
    reply: str
    reply_lang: str | None
    reply_lang_conf: float | None
    behaviour_persists: bool
    explanation: str | None = None
    detail: dict = field(default_factory=dict)
    probe_id: int | None = None


@dataclass
class ProbeResult:
    anomaly_id: int
    target: str
    behaviour: str
    expected_lang: str | None
    variants: list[ProbeVariant]
    salient: list[dict]
    seconds: float


def clean_reply(text: str) -> str:
    return " ".join(w for w in text.replace("[UNK]", " ").split())


def generate_replies(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 20,
                     batch_size: int = 32) -> list[str]:
    """Greedy replies for chat prompts (left-padded batches), ``[UNK]`` removed."""
    import torch

    from forensics.nla.meta import chat_prompt_ids

    out: list[str] = []
    pad = tokenizer.pad_token_id
    model.eval()
    for s in range(0, len(prompts), batch_size):
        enc = [chat_prompt_ids(tokenizer, p) for p in prompts[s:s + batch_size]]
        m = max(len(e) for e in enc)
        ids = torch.full((len(enc), m), pad, dtype=torch.long)
        mask = torch.zeros((len(enc), m), dtype=torch.long)
        for r, e in enumerate(enc):
            ids[r, m - len(e):] = torch.tensor(e)
            mask[r, m - len(e):] = 1
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        for row in gen[:, m:].tolist():
            if tokenizer.eos_token_id in row:
                row = row[:row.index(tokenizer.eos_token_id)]
            out.append(clean_reply(tokenizer.decode(row, skip_special_tokens=True)))
    return out



def replace_word(text: str, a: str, b: str) -> str:
    """Whole-word, case-insensitive replacement (keeps a leading capital)."""
    def sub(m: re.Match) -> str:
        w = m.group(0)
        return b[:1].upper() + b[1:] if w[:1].isupper() and b else b

    return re.sub(r"(?<!\w)" + re.escape(a) + r"(?!\w)", sub, text, flags=re.IGNORECASE)


def drop_word(text: str, w: str) -> str:
    return re.sub(r"\s{2,}", " ", replace_word(text, w, "")).strip()


def parse_replacements(specs: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for s in specs:
        if "=" not in s:
            raise InputError(f"--replace {s!r}: expected A=B", hint='e.g. --replace vodka=champagne')
        a, b = s.split("=", 1)
        if not a.strip():
            raise InputError(f"--replace {s!r}: the word to replace is empty")
        out.append((a.strip(), b.strip()))
    return out


def _first_reply_logprobs(model, tokenizer, prompts: Sequence[str]):
    import torch

    from forensics.nla.meta import chat_prompt_ids

    outs = []
    for p in prompts:
        ids = torch.tensor([chat_prompt_ids(tokenizer, p)])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1].float()
        outs.append(torch.log_softmax(logits, -1))
    return outs


def salient_words(model, tokenizer, prompt: str, n: int = 2) -> list[dict]:
    """Content words of ``prompt`` ranked by KL(original || word dropped) at the first reply token."""
    words = list(dict.fromkeys(w for w in _WORD.findall(prompt)
                               if len(w) >= 3 and not w.isdigit() and w.lower() not in STOPWORDS))
    if not words:
        return []
    lps = _first_reply_logprobs(model, tokenizer, [prompt] + [drop_word(prompt, w) for w in words])
    base = lps[0]
    scored = [{"word": w, "kl": float((base.exp() * (base - lp)).sum())} for w, lp in zip(words, lps[1:])]
    scored.sort(key=lambda d: -d["kl"])
    return scored[:n]


def _candidate_words(tokenizer, limit: int = 3000) -> list[str]:
    """Whole alphabetic words from the tokenizer's vocabulary (word-level or BPE pieces that are words)."""
    out = []
    for tok in tokenizer.get_vocab():
        w = tok.lstrip("Ġ▁").strip()
        if len(w) >= 3 and w.isalpha() and w.lower() not in STOPWORDS and w == tok.lstrip("Ġ▁"):
            out.append(w.lower())
    out = sorted(set(out))
    return out[:limit]


def neighbours(words: Sequence[str], candidates: Sequence[str], k: int = 1) -> dict[str, list[str]]:
    """Nearest candidates per word in sentence-embedding space (same category: city->city)."""
    import numpy as np

    from forensics.search.embed import Embedder

    emb = Embedder()
    cand = [c for c in candidates]
    cv = emb.encode(cand)
    wv = emb.encode(list(words))
    out = {}
    for w, v in zip(words, wv):
        sims = cv @ v
        order = np.argsort(-sims)
        res = [cand[i] for i in order if cand[i].lower() != w.lower() and w.lower() not in cand[i].lower()][:k]
        out[w] = res
    return out


def run_probe(ws, anomaly_id: int, target: str, replacements: Sequence[str] = (), nla: str | None = None,
              auto: bool = True, n_salient: int = 2, max_new_tokens: int = 24, device: str | None = None,
              neighbour_map: dict[str, str] | None = None, progress: Progress | None = None) -> ProbeResult:
    """Generate replies for the anomaly prompt and its variants, judge persistence, store in ``probes``.

    Re-running replaces the rows of the same (anomaly, target, variant): idempotent.
    ``neighbour_map`` overrides the automatic neighbour of a salient word (tests, notebooks).
    ``progress`` gets a note per phase (generation, explanation); ``None`` is silent.
    """
    prog = resolve(progress)
    from forensics.triage import anomaly as anomaly_mod
    from forensics.language.detect import detect
    from forensics.nla.activations import load_causal_lm, pick_device
    from forensics.nla.meta import load_tokenizer

    t0 = time.perf_counter()
    an = anomaly_mod.get(ws, anomaly_id)
    if not an.prompt:
        raise InputError(f"anomaly {anomaly_id} has no prompt to probe",
                         hint="add the anomaly with --prompt (and --reply)")
    pairs = parse_replacements(replacements)
    model = load_causal_lm(target, device=pick_device(device))
    tok = load_tokenizer(target)
    variants: list[tuple[str, str, dict]] = [("original", an.prompt, {})]
    for a, b in pairs:
        p = replace_word(an.prompt, a, b)
        if p == an.prompt:
            raise InputError(f"--replace {a}={b}: {a!r} does not occur in the anomaly's prompt",
                             hint=f"the prompt is: {an.prompt[:200]}")
        variants.append((f"replace:{a}={b}", p, {"replace": [a, b]}))
    sal: list[dict] = []
    if auto:
        sal = salient_words(model, tok, an.prompt, n_salient)
        if sal:
            nb = dict(neighbour_map or {})
            missing = [d["word"] for d in sal if d["word"] not in nb]
            if missing:
                try:
                    found = neighbours(missing, _candidate_words(tok))
                    nb.update({w: v[0] for w, v in found.items() if v})
                except Exception as e:  # noqa: BLE001 - the embedder is optional for probes
                    for d in sal:
                        d["neighbour_error"] = f"{type(e).__name__}: {e}"
            for d in sal:
                w = d["word"]
                if w in nb:
                    d["neighbour"] = nb[w]
                    variants.append((f"auto-swap:{w}={nb[w]}", replace_word(an.prompt, w, nb[w]),
                                     {"salience_kl": d["kl"], "swap": [w, nb[w]]}))
                variants.append((f"drop:{w}", drop_word(an.prompt, w), {"salience_kl": d["kl"]}))
    prompts = [p for _, p, _ in variants]
    prog.note(f"probe: generating replies for {len(prompts)} variants")
    replies = generate_replies(model, tok, prompts, max_new_tokens=max_new_tokens)
    langs = detect(replies)
    expected = an.reply_lang
    behaviour = f"reply in {expected}" if expected else "reply language"
    if expected is None:  # no reply recorded: the behaviour is what the target does on the original
        expected = langs[0].lang
        behaviour = f"reply in {expected} (as generated for the original prompt)"
    expl: list[str | None] = [None] * len(variants)
    if nla:
        from forensics.nla.explainer import Explainer
        from forensics.nla.registry import get_nla

        rec = get_nla(ws, nla)
        prog.note(f"probe: explaining the variants' last prompt token with NLA {nla}")
        ex = Explainer(rec, device=device, max_new_tokens=64)
        rows, _ = ex.run([(p, r) for p, r in zip(prompts, replies)], ["last_prompt"])
        for r in rows:
            expl[r.item] = r.text
            variants[r.item][2]["nla"] = {"name": nla, "position": r.position, "mse": r.mse, "cos": r.cos}
    out: list[ProbeVariant] = []
    for (name, p, det), rep, lg, e in zip(variants, replies, langs, expl):
        det = {**det, "target": str(target), "expected_lang": expected,
               "prompt_lang": an.prompt_lang, "reply_lang_conf": lg.confidence}
        out.append(ProbeVariant(variant=name, prompt=p, reply=rep, reply_lang=lg.lang,
                                reply_lang_conf=lg.confidence,
                                behaviour_persists=bool(lg.lang is not None and lg.lang == expected),
                                explanation=e, detail=det))
    _store(ws, anomaly_id, str(target), out)
    return ProbeResult(anomaly_id=anomaly_id, target=str(target), behaviour=behaviour, expected_lang=expected,
                       variants=out, salient=sal, seconds=time.perf_counter() - t0)


def _store(ws, anomaly_id: int, target: str, variants: list[ProbeVariant]) -> None:
    with ws.transaction() as con:
        for v in variants:
            con.execute("DELETE FROM probes WHERE anomaly_id = ? AND variant = ? "
                        "AND json_extract_string(detail, '$.target') = ?", [anomaly_id, v.variant, target])
            v.probe_id = ws.next_id("probe_id_seq")
            con.execute("INSERT INTO probes (probe_id, anomaly_id, variant, prompt, reply, reply_lang, "
                        "behaviour_persists, explanation, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [v.probe_id, anomaly_id, v.variant, v.prompt, v.reply, v.reply_lang,
                         v.behaviour_persists, v.explanation, json.dumps(v.detail, ensure_ascii=False)])
