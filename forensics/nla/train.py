"""Train a small NLA (AV + AR) for any local Hugging Face causal LM, on CPU or CUDA.

The recipe follows the paper, scaled down to run on a laptop:

1. **Activations**: the target runs on the dataset's (prompt, reply) pairs (chat template, as
   the runtime does it); at each text we take the last prompt token plus a few random positions
   past the first ``skip_tokens`` tokens, at layer K with the runtime's hidden-state convention
   (:mod:`forensics.nla.activations`, reused as is).
2. **Warm-start targets**: a summary of the text up to each position. The paper used a strong
   LLM; :class:`BuiltinSummarizer` is deterministic (language and script of the prefix, its
   role, salient terms, and what follows: the next words and the reply's language);
   :class:`HTTPSummarizer` calls any OpenAI-compatible ``/v1/chat/completions`` endpoint.
3. **Supervised stage**: the AR (target cut to K+1 blocks, final norm = identity, value head)
   regresses the normalised activation from the summary (MSE after rescaling both to
   ``mse_scale``); the AV (a copy of the target) learns to write ``<explanation>summary
   </explanation>`` with the vector injected at the slot (next-token loss on the explanation).
4. **RL stage**: GRPO on the AV. For each vector a group of explanations is sampled; reward =
   minus the AR's normalised MSE; advantages are group-normalised; a KL penalty (k3 estimator)
   keeps the AV near the warm-started copy. The AR is regressed on the sampled explanations in
   the same steps. Rewards are computed under ``no_grad`` and the AR sees detached text: no
   gradient flows between the two.
5. **Output**: AV and AR written with the runtime's writers (:func:`forensics.nla.meta.write_av`,
   :func:`write_ar`), so ``forensics nla register`` loads them unchanged. FVE on held-out
   positions is measured after each stage with the runtime's own :class:`AV`/:class:`AR`
   classes, against a shuffled baseline (each held-out vector scored against the explanation
   of another vector).

Everything is plain PyTorch; no TRL. Numbers are only what was measured in the run.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from forensics.errors import BackendError, InputError
from forensics.nla.meta import DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE, DEFAULT_INJECTION_CHAR

LANG_NAMES = {
    "en": "english", "de": "german", "es": "spanish", "fr": "french", "ru": "russian", "zh": "chinese",
    "el": "greek", "tr": "turkish", "vi": "vietnamese", "ro": "romanian", "it": "italian",
    "pt": "portuguese", "nl": "dutch", "pl": "polish", "ja": "japanese", "ko": "korean", "ar": "arabic",
    "uk": "ukrainian", "sv": "swedish", "hi": "hindi",
}
#: Every fixed word the built-in summarizer writes (a word-level tokenizer must contain them).
SUMMARY_WORDS = sorted(set(
    "question answer prompt reply translation request from to in the is about terms next end "
    "unknown language script latin cyrillic greek cjk arabic mixed so far before word none ends starts"
    .split()
    + list(LANG_NAMES.values()) + [".", ",", ":"]))
_WORD = re.compile(r"\w+", re.UNICODE)
_TRANSLATE = re.compile(r"^\s*translate\s+(?:this\s+)?(?:in)?to\s+(\w+)", re.IGNORECASE)


# ---------------------------------------------------------------------------- summarizers


@dataclass
class PositionContext:
    """What a summarizer may know about one position: the text so far and what follows."""

    prompt: str
    reply: str
    in_reply: bool
    prefix: str          # text of the current part (prompt or reply) up to and including the token
    following: str       # text of the current part after the token
    prompt_lang: str | None
    reply_lang: str | None


def _script(text: str) -> str:
    counts = {"latin": 0, "cyrillic": 0, "greek": 0, "cjk": 0, "arabic": 0}
    for ch in text:
        o = ord(ch)
        if ch.isalpha():
            if o < 0x250:
                counts["latin"] += 1
            elif 0x370 <= o < 0x400:
                counts["greek"] += 1
            elif 0x400 <= o < 0x530:
                counts["cyrillic"] += 1
            elif 0x600 <= o < 0x700:
                counts["arabic"] += 1
            elif 0x3040 <= o < 0xA000 or 0xAC00 <= o < 0xD7B0:
                counts["cjk"] += 1
    best = max(counts, key=counts.get)
    return best if counts[best] else "unknown"


class BuiltinSummarizer:
    """Deterministic warm-start targets, one short line per position.

    Examples (an English question whose reply is German; a position inside the question, and
    the last prompt token)::

        english question latin script . reply in german . terms : warsaw saxon . next : garden in polish . before : where is . word : the
        english question latin script . reply in german . terms : warsaw saxon garden . prompt ends : saxon garden ? . reply starts : der sächsische garten

    WHY this shape (measured, docs/case_study.md): a residual-stream vector of a small model
    mostly encodes the CURRENT token, the few before it, and the prediction of the next one. The
    first version described only the prefix's language, role and salient terms and never named
    the current word; an AR trained on those summaries could not beat a constant prediction on
    positions inside the text (held-out FVE -0.27 there). Naming the current word last (right
    before the AR's readout), the two words before it and the next words lifts the AR ceiling
    on gold summaries from 0.03 to 0.17 (toy target, layer 1). Salient terms are the prefix's
    words with the highest inverse document frequency in the training texts (topic words win
    over function words). The chat template's role words never count as text.
    """

    name = "builtin"

    def __init__(self, texts: Sequence[str], n_terms: int = 3, n_next: int = 3):
        df: dict[str, int] = {}
        for t in texts:
            for w in set(x.lower() for x in _WORD.findall(t)):
                df[w] = df.get(w, 0) + 1
        self.df = df
        self.n = max(1, len(texts))
        self.n_terms = n_terms
        self.n_next = n_next

    def _terms(self, text: str) -> list[str]:
        words = [w.lower() for w in _WORD.findall(text) if len(w) >= 4 and not w.isdigit()]
        uniq = list(dict.fromkeys(words))
        uniq.sort(key=lambda w: -math.log((self.n + 1) / (self.df.get(w, 0) + 1)))
        return uniq[:self.n_terms]

    def summarize(self, c: PositionContext) -> str:
        pl = LANG_NAMES.get(c.prompt_lang or "", "unknown")
        rl = LANG_NAMES.get(c.reply_lang or "", "unknown")
        follow = [w.lower() for w in _WORD.findall(c.following)]
        end_of_prompt = not c.in_reply and not follow
        if end_of_prompt:  # what follows the last prompt token is the reply
            follow = [w.lower() for w in _WORD.findall(c.reply)]
        nxt = " ".join(follow[:self.n_next]) or "end"
        words = c.prefix.lower().split()
        terms = " ".join(self._terms(c.prefix)) or "none"
        if not c.in_reply:
            m = _TRANSLATE.match(c.prompt)
            role = f"translation request to {m.group(1).lower()}" if m else (
                "question" if "?" in c.prompt else "prompt")
            head = f"{pl} {role} {_script(c.prefix)} script . reply in {rl} ."
        else:
            head = f"{rl} answer to {pl} prompt {_script(c.prefix)} script ."
        if end_of_prompt:
            return f"{head} terms : {terms} . prompt ends : {' '.join(words[-3:]) or 'none'} . reply starts : {nxt}"
        return (f"{head} terms : {terms} . next : {nxt} . before : {' '.join(words[-3:-1]) or 'none'} . "
                f"word : {words[-1] if words else 'none'}")

    def summarize_many(self, ctxs: Sequence[PositionContext]) -> list[str]:
        return [self.summarize(c) for c in ctxs]


class HTTPSummarizer:
    """Warm-start targets from any OpenAI-compatible chat endpoint (``POST {url}/v1/chat/completions``).

    The model is asked for two or three short sentences: genre and context, the recent phrase
    signals, and what the text is expected to continue with. Temperature 0; failures raise
    :class:`BackendError` naming the URL (a partial training set would silently bias the AV).
    """

    name = "http"
    SYSTEM = ("You write the target summary for an activation explainer. Given the text a language "
              "model has read so far and what comes next, describe in 2-3 short sentences: the genre, "
              "language and role of the text (question, answer, request), the recent salient terms, "
              "and what the text is expected to continue with (its language and opening words).")

    def __init__(self, url: str, model: str = "default", timeout: float = 60.0, api_key: str | None = None):
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1/chat/completions"):
            self.url += "/v1/chat/completions"
        self.model = model
        self.timeout = timeout
        self.api_key = api_key

    def summarize(self, c: PositionContext) -> str:
        where = "reply" if c.in_reply else "prompt"
        user = (f"Prompt: {c.prompt}\nReply: {c.reply}\nThe model is inside the {where}; text so far in "
                f"that part: {c.prefix}\nWhat follows: {c.following}")
        body = json.dumps({"model": self.model, "temperature": 0, "max_tokens": 120,
                           "messages": [{"role": "system", "content": self.SYSTEM},
                                        {"role": "user", "content": user}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                data = json.loads(r.read().decode("utf-8"))
            return str(data["choices"][0]["message"]["content"]).strip()
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"summarizer {self.url}: {type(e).__name__}: {e}",
                               hint="check --summarizer-url (an OpenAI-compatible server) or use "
                                    "--summarizer builtin") from None

    def summarize_many(self, ctxs: Sequence[PositionContext]) -> list[str]:
        return [self.summarize(c) for c in ctxs]


# ---------------------------------------------------------------------------- config & report


@dataclass
class TrainConfig:
    layer: int
    hidden_state_index: int | None = None
    positions_per_text: int = 6          # random positions per text, besides the last prompt token
    skip_tokens: int = 3                 # never sample the first tokens (they decode poorly)
    heldout_frac: float = 0.15
    max_heldout: int = 256
    sft_steps: int = 300
    rl_steps: int = 30
    batch_size: int = 32
    av_lr: float = 2e-3
    ar_lr: float = 2e-3
    rl_lr: float = 2e-4
    rl_batch: int = 8                    # vectors per GRPO step
    rl_group: int = 8                    # sampled explanations per vector
    kl_coef: float = 0.05
    temperature: float = 1.0
    max_new_tokens: int = 40
    injection_char: str = DEFAULT_INJECTION_CHAR
    seed: int = 0
    device: str | None = None


@dataclass
class StageEval:
    fve: float
    mse: float
    cos: float
    fve_shuffled: float
    fve_summaries: float      # the AR on the warm-start summaries themselves (its ceiling here)
    examples: list[dict] = field(default_factory=list)


@dataclass
class TrainReport:
    target: str
    av_dir: str
    ar_dir: str
    layer: int
    hidden_state_index: int
    d_model: int
    n_texts: int
    n_train_positions: int
    n_heldout_positions: int
    variance: float
    injection_scale: float
    summarizer: str
    device: str
    ar_loss: list[float] = field(default_factory=list)      # first, last (EMA) of the SFT stage
    av_loss: list[float] = field(default_factory=list)
    rl_reward: list[float] = field(default_factory=list)    # mean reward, first and last steps
    rl_kl: float | None = None
    baseline: StageEval | None = None                      # before training (random AV/AR)
    sft: StageEval | None = None
    rl: StageEval | None = None
    av_tokens_per_s: float = 0.0          # SFT, forward + backward + step, explanation tokens
    ar_tokens_per_s: float = 0.0          # SFT, AR prompt tokens
    av_positions_per_s: float = 0.0       # SFT, training positions (vectors) per second
    ar_positions_per_s: float = 0.0
    rl_explanations_per_s: float = 0.0    # GRPO sampling only
    rl_steps_per_s: float = 0.0           # whole GRPO steps (sample + reward + update + AR step)
    seconds: dict = field(default_factory=dict)

    def summary(self) -> dict:
        d = asdict(self)
        for k in ("baseline", "sft", "rl"):
            if d.get(k):
                d[k].pop("examples", None)
        return d


# ---------------------------------------------------------------------------- helpers


def _norm(x, scale: float):
    return x * (scale / x.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def _ensure_injection_char(tokenizer, model, char: str) -> None:
    """Add the injection character as one token when the tokenizer splits it (resizing the AV)."""
    ids = tokenizer.encode(char, add_special_tokens=False)
    if len(ids) != 1:
        tokenizer.add_tokens([char])
        model.resize_token_embeddings(len(tokenizer))


def _position_contexts(tokenizer, item: tuple[str, str], ids: list[int], plen: int, pos: int,
                       langs: tuple[str | None, str | None]) -> PositionContext:
    """Text before/after token ``pos``, within its part (prompt or reply)."""
    prompt, reply = item
    in_reply = pos >= plen
    if in_reply:
        part = ids[plen:]
        k = pos - plen + 1
    else:
        # prompt content tokens only: drop the chat-template lead-in by locating the content
        part = ids[:plen]
        k = pos + 1
    before = tokenizer.decode(part[:k], skip_special_tokens=True)
    after = tokenizer.decode(part[k:], skip_special_tokens=True)
    if not in_reply:
        before = re.sub(r"^\s*(user|system)\b", "", before.strip(), count=1)
        # the generation prompt's role word is template, not text (it showed up as a "salient term")
        before = re.sub(r"\bassistant\s*$", "", before.strip())
        after = re.sub(r"\bassistant\s*$", "", after.strip())
    return PositionContext(prompt=prompt, reply=reply, in_reply=in_reply, prefix=before.strip(),
                           following=after.strip(), prompt_lang=langs[0], reply_lang=langs[1])


@dataclass
class _Pos:
    item: int
    token_index: int
    label: str
    vector: object
    summary: str = ""


def collect_positions(model, tokenizer, items: Sequence[tuple[str, str]], cfg: TrainConfig,
                      langs: Sequence[tuple[str | None, str | None]], batch_size: int = 16) -> list[_Pos]:
    """Step 1: activations at the last prompt token + random positions past ``skip_tokens``."""
    from forensics.nla.activations import encode_item, extract_activations

    rng = random.Random(cfg.seed)
    out: list[_Pos] = []
    for s in range(0, len(items), 64):
        chunk = list(items[s:s + 64])
        enc = [encode_item(tokenizer, it) for it in chunk]
        maxlen = max(len(e[0]) for e in enc)
        acts = extract_activations(model, tokenizer, chunk, [f"token:{i}" for i in range(maxlen)],
                                   cfg.layer, cfg.hidden_state_index, batch_size=batch_size,
                                   early_tokens=cfg.skip_tokens)
        by = {(a.item, a.token_index): a for a in acts if a.ok}
        for j, (ids, plen) in enumerate(enc):
            want = {plen - 1} if plen - 1 >= cfg.skip_tokens else set()
            cand = [i for i in range(cfg.skip_tokens, len(ids)) if i != plen - 1]
            want.update(rng.sample(cand, min(cfg.positions_per_text, len(cand))))
            for t in sorted(want):
                a = by.get((j, t))
                if a is None:
                    continue
                label = "last_prompt" if t == plen - 1 else (f"reply:{t - plen}" if t >= plen else f"token:{t}")
                out.append(_Pos(item=s + j, token_index=t, label=label, vector=a.vector))
        for p in out:
            if p.item >= s and not p.summary:
                p.summary = ""  # filled below
    return out


def _detect_langs(items: Sequence[tuple[str, str]]) -> list[tuple[str | None, str | None]]:
    from forensics.language.detect import detect

    pl = detect([p for p, _ in items])
    rl = detect([r or "" for _, r in items])
    return [(a.lang, b.lang) for a, b in zip(pl, rl)]


# ---------------------------------------------------------------------------- the trainer


class NLATrainer:
    """Holds target, AV, reference AV, AR backbone and value head during training.

    Notebook use::

        tr = NLATrainer("toy-target", TrainConfig(layer=2))
        report = tr.fit(pairs, "out/nla")          # pairs: [(prompt, reply), ...]
    """

    def __init__(self, target: str | Path, cfg: TrainConfig, summarizer=None,
                 progress: Callable[[str, dict], None] | None = None):
        import torch

        from forensics.nla.activations import load_causal_lm, pick_device
        from forensics.nla.meta import load_tokenizer

        self.torch = torch
        self.cfg = cfg
        self.target_path = Path(target)
        self.device = pick_device(cfg.device)
        self.tok = load_tokenizer(self.target_path)
        if not getattr(self.tok, "chat_template", None):
            raise InputError(f"{target}: the tokenizer has no chat template",
                             hint="the AV prompt is one chat turn; give the tokenizer a chat template")
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.target = load_causal_lm(self.target_path, device=self.device)
        self.summarizer = summarizer
        self.progress = progress or (lambda stage, info: None)
        torch.manual_seed(cfg.seed)
        self.av = copy.deepcopy(self.target).to(self.device)
        _ensure_injection_char(self.tok, self.av, cfg.injection_char)
        base = self.target.model if hasattr(self.target, "model") else self.target
        self.ar = copy.deepcopy(base)
        n_keep = cfg.layer + 1
        self.ar.layers = torch.nn.ModuleList(list(self.ar.layers)[:n_keep])
        self.ar.config.num_hidden_layers = n_keep
        if isinstance(getattr(self.ar.config, "layer_types", None), list):
            self.ar.config.layer_types = self.ar.config.layer_types[:n_keep]
        self._ar_norm = self.ar.norm
        self.ar.norm = torch.nn.Identity()  # the contract: final norm replaced by identity
        d = int(base.config.hidden_size)
        self.d = d
        self.head = torch.nn.Linear(d, d, bias=False).to(self.device)
        torch.nn.init.eye_(self.head.weight)
        self.ar.to(self.device)
        self.mse_scale = math.sqrt(d)
        self.close_ids = self.tok.encode("</explanation>", add_special_tokens=False)

    # -------------------------------------------------------------- AV pieces
    def _av_prompt(self):
        from forensics.nla.meta import chat_prompt_ids

        ids = chat_prompt_ids(self.tok, DEFAULT_AV_TEMPLATE.format(injection_char=self.cfg.injection_char))
        tid = self.tok.encode(self.cfg.injection_char, add_special_tokens=False)[0]
        return ids, ids.index(tid)

    def _embed_scale(self) -> float:
        from forensics.nla.av import embed_scale_for

        return embed_scale_for(self.av.config, self.av.get_input_embeddings())

    def _prompt_embeds(self, vectors):
        """[n, L, d] AV prompt embeddings with the vectors (rescaled) injected at the slot."""
        torch = self.torch
        ids, slot = self._av_prompt()
        emb = self.av.get_input_embeddings()
        base = emb(torch.tensor(ids, device=self.device)) * (self._embed_scale() if not hasattr(emb, "embed_scale") else 1.0)
        v = _norm(vectors.to(self.device, torch.float32), self.injection_scale)
        x = base.unsqueeze(0).repeat(v.shape[0], 1, 1).clone()
        x[:, slot, :] = v.to(x.dtype)
        return x

    def _target_ids(self, text: str) -> list[int]:
        t = self.tok.encode(f"<explanation> {text} </explanation>", add_special_tokens=False)
        return t + [self.tok.eos_token_id]

    def _av_loss(self, model, vectors, targets: list[list[int]]):
        """Next-token loss on explanation tokens; returns (mean loss, n tokens)."""
        torch = self.torch
        px = self._prompt_embeds(vectors)
        L = px.shape[1]
        m = max(len(t) for t in targets)
        pad = self.tok.pad_token_id
        tid = torch.full((len(targets), m), pad, dtype=torch.long, device=self.device)
        lab = torch.full((len(targets), L + m), -100, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(targets), L + m), dtype=torch.long, device=self.device)
        for r, t in enumerate(targets):
            tid[r, :len(t)] = torch.tensor(t)
            lab[r, L:L + len(t)] = torch.tensor(t)
            mask[r, :L + len(t)] = 1
        tx = model.get_input_embeddings()(tid)
        x = torch.cat([px.to(tx.dtype), tx], dim=1)
        out = model(inputs_embeds=x, attention_mask=mask, labels=lab)
        return out.loss, int((lab != -100).sum())

    # -------------------------------------------------------------- AR pieces
    def _ar_forward(self, texts: Sequence[str]):
        torch = self.torch
        from forensics.nla.meta import ar_prompt_ids

        enc = [ar_prompt_ids(self._ar_sidecar, self.tok, t) for t in texts]
        m = max(len(e) for e in enc)
        ids = torch.full((len(enc), m), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(enc), m), dtype=torch.long)
        for r, e in enumerate(enc):
            ids[r, :len(e)] = torch.tensor(e)
            mask[r, :len(e)] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        h = self.ar(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    position_ids=pos.to(self.device), use_cache=False).last_hidden_state
        last = torch.tensor([len(e) - 1 for e in enc], device=self.device)
        return self.head(h[torch.arange(len(enc), device=self.device), last].float()), sum(len(e) for e in enc)

    def _ar_loss(self, texts, vectors):
        pred, n = self._ar_forward(texts)
        g = _norm(vectors.to(self.device, self.torch.float32), self.mse_scale)
        return ((_norm(pred, self.mse_scale) - g) ** 2).mean(), n

    # -------------------------------------------------------------- evaluation with the runtime
    def _runtime_pair(self):
        """The runtime's own AV/AR classes around the in-memory models (no copy)."""
        from forensics.nla.ar import AR
        from forensics.nla.av import AV, embed_scale_for
        from forensics.nla.backends import make_backend
        from forensics.nla.meta import parse_sidecar

        emb = self.av.get_input_embeddings()
        av = AV(self.av_dir, parse_sidecar(self.av_dir, role="av"), self.tok, emb.weight.detach(),
                embed_scale_for(self.av.config, emb), make_backend("local", model=self.av, tokenizer=self.tok),
                self.av.config, self.cfg.max_new_tokens)
        ar = AR(self.ar_dir, self._ar_sidecar, self.tok, self.ar, self.head)
        return av, ar

    def evaluate(self, heldout: list[_Pos]) -> StageEval:
        torch = self.torch
        from forensics.nla.ar import score

        self.av.eval()
        self.ar.eval()
        av, ar = self._runtime_pair()
        vecs = torch.stack([p.vector for p in heldout])
        exps = av.explain(list(vecs), batch_size=32)
        texts = [e.text for e in exps]
        pred = ar.predict(texts, batch_size=32)
        mse, cos, fve = score(pred, vecs, self.mse_scale, self.variance)
        shuf = list(range(1, len(texts))) + [0]  # every vector gets another vector's explanation
        _, _, fve_s = score(pred[shuf], vecs, self.mse_scale, self.variance)
        _, _, fve_g = score(ar.predict([p.summary for p in heldout], batch_size=32), vecs, self.mse_scale,
                            self.variance)
        ex = [{"position": p.label, "summary": p.summary, "explanation": t, "fve": float(f)}
              for p, t, f in list(zip(heldout, texts, fve))[:8]]
        return StageEval(fve=float(fve.mean()), mse=float(mse.mean()), cos=float(cos.mean()),
                         fve_shuffled=float(fve_s.mean()), fve_summaries=float(fve_g.mean()), examples=ex)

    # -------------------------------------------------------------- stages
    def fit(self, items: Sequence[tuple[str, str]], out_dir: str | Path,
            langs: Sequence[tuple[str | None, str | None]] | None = None) -> TrainReport:
        torch = self.torch
        from forensics.nla.activations import default_hidden_state_index, encode_item
        from forensics.nla.ar import dataset_variance
        from forensics.nla.meta import parse_sidecar, write_ar, write_av, write_sidecar

        cfg = self.cfg
        t_all = time.perf_counter()
        secs: dict[str, float] = {}
        items = [(p or "", r or "") for p, r in items]
        if len(items) < 4:
            raise InputError(f"need at least 4 (prompt, reply) texts to train an NLA, got {len(items)}")
        out = Path(out_dir)
        self.av_dir, self.ar_dir = out / "av", out / "ar"
        # 1. activations
        t0 = time.perf_counter()
        self.progress("activations", {"texts": len(items)})
        langs = list(langs) if langs is not None else _detect_langs(items)
        pos = collect_positions(self.target, self.tok, items, cfg, langs)
        if len(pos) < 8:
            raise InputError(f"only {len(pos)} usable positions (texts too short for --skip-tokens "
                             f"{cfg.skip_tokens}?)")
        secs["activations"] = time.perf_counter() - t0
        # 2. summaries
        t0 = time.perf_counter()
        if self.summarizer is None:
            self.summarizer = BuiltinSummarizer([p + " " + r for p, r in items])
        encs = {}
        ctxs = []
        for p in pos:
            if p.item not in encs:
                encs[p.item] = encode_item(self.tok, items[p.item])
            ids, plen = encs[p.item]
            ctxs.append(_position_contexts(self.tok, items[p.item], ids, plen, p.token_index, langs[p.item]))
        self.progress("summaries", {"positions": len(pos), "summarizer": self.summarizer.name})
        for p, s in zip(pos, self.summarizer.summarize_many(ctxs)):
            p.summary = s
        secs["summaries"] = time.perf_counter() - t0
        # split by text, so held-out positions come from texts never trained on
        rng = random.Random(cfg.seed)
        texts_ids = sorted({p.item for p in pos})
        rng.shuffle(texts_ids)
        n_held = max(2, int(len(texts_ids) * cfg.heldout_frac))
        held_items = set(texts_ids[:n_held])
        train = [p for p in pos if p.item not in held_items]
        heldout = [p for p in pos if p.item in held_items][:cfg.max_heldout]
        vecs = torch.stack([p.vector for p in train])
        self.variance = dataset_variance(list(vecs), self.mse_scale)
        self.injection_scale = float(vecs.norm(dim=-1).median())
        hsi = default_hidden_state_index(cfg.layer) if cfg.hidden_state_index is None else cfg.hidden_state_index
        # sidecars first: the runtime classes used for evaluation read them
        extra = {"training": {"recipe": "forensics.nla.train (SFT + GRPO)", "target": str(self.target_path),
                              "hidden_state_index": hsi, "summarizer": self.summarizer.name}}
        write_sidecar(self.av_dir, role="av", tokenizer=self.tok, d_model=self.d,
                      injection_scale=self.injection_scale, mse_scale="sqrt_d_model", layer=cfg.layer,
                      injection_char=cfg.injection_char, av_template=DEFAULT_AV_TEMPLATE,
                      ar_template=DEFAULT_AR_TEMPLATE, extra=extra)
        write_sidecar(self.ar_dir, role="ar", tokenizer=self.tok, d_model=self.d,
                      injection_scale=self.injection_scale, mse_scale="sqrt_d_model", layer=cfg.layer,
                      injection_char=cfg.injection_char, av_template=DEFAULT_AV_TEMPLATE,
                      ar_template=DEFAULT_AR_TEMPLATE, extra=extra)
        self._ar_sidecar = parse_sidecar(self.ar_dir, role="ar")
        rep = TrainReport(target=str(self.target_path), av_dir=str(self.av_dir), ar_dir=str(self.ar_dir),
                          layer=cfg.layer, hidden_state_index=hsi, d_model=self.d, n_texts=len(items),
                          n_train_positions=len(train), n_heldout_positions=len(heldout),
                          variance=self.variance, injection_scale=self.injection_scale,
                          summarizer=self.summarizer.name, device=self.device)
        # 3. supervised warm start
        t0 = time.perf_counter()
        self._sft(train, rep)
        secs["sft"] = time.perf_counter() - t0
        rep.sft = self.evaluate(heldout)
        self.progress("eval", {"stage": "sft", "fve": rep.sft.fve, "fve_shuffled": rep.sft.fve_shuffled})
        # 4. GRPO
        if cfg.rl_steps > 0:
            t0 = time.perf_counter()
            self._grpo(train, rep)
            secs["rl"] = time.perf_counter() - t0
            rep.rl = self.evaluate(heldout)
            self.progress("eval", {"stage": "rl", "fve": rep.rl.fve, "fve_shuffled": rep.rl.fve_shuffled})
        # 5. write
        t0 = time.perf_counter()
        extra["training"].update({"fve_sft": rep.sft.fve, "fve_rl": rep.rl.fve if rep.rl else None,
                                  "fve_shuffled": (rep.rl or rep.sft).fve_shuffled,
                                  "variance": self.variance})
        self.av.eval()
        write_av(self.av_dir, self.av, self.tok, layer=cfg.layer, injection_scale=self.injection_scale,
                 injection_char=cfg.injection_char, extra=extra)
        self.ar.norm = self._ar_norm  # saved with its norm; the runtime replaces it by identity at load
        try:
            write_ar(self.ar_dir, self.ar, self.head, self.tok, layer=cfg.layer,
                     injection_scale=self.injection_scale, injection_char=cfg.injection_char, extra=extra)
        finally:
            self.ar.norm = torch.nn.Identity()
        secs["write"] = time.perf_counter() - t0
        secs["total"] = time.perf_counter() - t_all
        rep.seconds = secs
        return rep

    def _sft(self, train: list[_Pos], rep: TrainReport) -> None:
        torch = self.torch
        cfg = self.cfg
        rng = random.Random(cfg.seed + 1)
        self.av.train()
        self.ar.train()
        opt_av = torch.optim.AdamW(self.av.parameters(), lr=cfg.av_lr, weight_decay=0.0)
        opt_ar = torch.optim.AdamW(list(self.ar.parameters()) + list(self.head.parameters()), lr=cfg.ar_lr)
        steps = max(1, cfg.sft_steps)
        lr_f = lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps))  # noqa: E731
        s_av = torch.optim.lr_scheduler.LambdaLR(opt_av, lr_f)
        s_ar = torch.optim.lr_scheduler.LambdaLR(opt_ar, lr_f)
        ema_av = ema_ar = None
        first_av = first_ar = None
        t_av = t_ar = 0.0
        n_av = n_ar = 0
        for step in range(steps):
            batch = [train[rng.randrange(len(train))] for _ in range(cfg.batch_size)]
            v = torch.stack([p.vector for p in batch])
            t0 = time.perf_counter()
            loss_ar, n = self._ar_loss([p.summary for p in batch], v)
            opt_ar.zero_grad()
            loss_ar.backward()
            torch.nn.utils.clip_grad_norm_(list(self.ar.parameters()) + list(self.head.parameters()), 1.0)
            opt_ar.step()
            s_ar.step()
            b = float(loss_ar.detach())  # also a device sync, so the timings split correctly on CUDA
            t_ar += time.perf_counter() - t0
            n_ar += n
            t0 = time.perf_counter()
            loss_av, n = self._av_loss(self.av, v, [self._target_ids(p.summary) for p in batch])
            opt_av.zero_grad()
            loss_av.backward()
            torch.nn.utils.clip_grad_norm_(self.av.parameters(), 1.0)
            opt_av.step()
            s_av.step()
            a = float(loss_av.detach())
            t_av += time.perf_counter() - t0
            n_av += n
            first_av = a if first_av is None else first_av
            first_ar = b if first_ar is None else first_ar
            ema_av = a if ema_av is None else 0.9 * ema_av + 0.1 * a
            ema_ar = b if ema_ar is None else 0.9 * ema_ar + 0.1 * b
            if step % 25 == 0 or step == steps - 1:
                self.progress("sft", {"step": step + 1, "of": steps, "av_loss": ema_av, "ar_mse": ema_ar})
        rep.av_loss = [first_av, ema_av]
        rep.ar_loss = [first_ar, ema_ar]
        rep.av_tokens_per_s = n_av / max(t_av, 1e-9)
        rep.ar_tokens_per_s = n_ar / max(t_ar, 1e-9)
        rep.av_positions_per_s = steps * cfg.batch_size / max(t_av, 1e-9)
        rep.ar_positions_per_s = steps * cfg.batch_size / max(t_ar, 1e-9)

    def _grpo(self, train: list[_Pos], rep: TrainReport) -> None:
        torch = self.torch
        F = torch.nn.functional
        cfg = self.cfg
        from forensics.nla.av import parse_explanation

        rng = random.Random(cfg.seed + 2)
        ref = copy.deepcopy(self.av).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        opt_av = torch.optim.AdamW(self.av.parameters(), lr=cfg.rl_lr, weight_decay=0.0)
        opt_ar = torch.optim.AdamW(list(self.ar.parameters()) + list(self.head.parameters()), lr=cfg.ar_lr * 0.25)
        stops = set(self.close_ids[-1:]) | {self.tok.eos_token_id}
        rewards: list[float] = []
        kls: list[float] = []
        n_expl = 0
        t_gen = 0.0
        t_rl = time.perf_counter()
        G = cfg.rl_group
        for step in range(cfg.rl_steps):
            batch = [train[rng.randrange(len(train))] for _ in range(cfg.rl_batch)]
            v = torch.stack([p.vector for p in batch]).repeat_interleave(G, dim=0)
            # sample a group of explanations per vector
            t0 = time.perf_counter()
            self.av.eval()
            with torch.no_grad():
                px = self._prompt_embeds(v)
                gen = self.av.generate(inputs_embeds=px, attention_mask=torch.ones(px.shape[:2], dtype=torch.long,
                                                                                     device=self.device),
                                       do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
                                       max_new_tokens=cfg.max_new_tokens, pad_token_id=self.tok.pad_token_id,
                                       eos_token_id=sorted(stops))
            t_gen += time.perf_counter() - t0
            seqs = gen.tolist()
            toks, texts = [], []
            for row in seqs:
                cut = len(row)
                for k, t in enumerate(row):
                    if t in stops:
                        cut = k + 1
                        break
                toks.append(row[:cut] or [self.tok.eos_token_id])
                txt, _, _ = parse_explanation(self.tok.decode(row[:cut], skip_special_tokens=True))
                texts.append(txt or "")
            n_expl += len(texts)
            # reward: minus the AR's normalised MSE (no gradient to the AV)
            self.ar.eval()
            with torch.no_grad():
                pred, _ = self._ar_forward(texts)
                g = _norm(v.to(self.device), self.mse_scale)
                r = -((_norm(pred, self.mse_scale) - g) ** 2).mean(dim=-1)
            rg = r.view(-1, G)
            adv = ((rg - rg.mean(dim=1, keepdim=True)) / (rg.std(dim=1, keepdim=True) + 1e-4)).view(-1)
            rewards.append(float(r.mean()))
            # policy gradient with KL to the warm-started AV
            self.av.train()
            L = px.shape[1]
            m = max(len(t) for t in toks)
            tid = torch.full((len(toks), m), self.tok.pad_token_id, dtype=torch.long, device=self.device)
            tmask = torch.zeros((len(toks), m), dtype=torch.float32, device=self.device)
            for i, t in enumerate(toks):
                tid[i, :len(t)] = torch.tensor(t)
                tmask[i, :len(t)] = 1
            amask = torch.cat([torch.ones(px.shape[:2], device=self.device), tmask], dim=1).long()

            def logp(model):
                x = torch.cat([px.to(model.dtype), model.get_input_embeddings()(tid)], dim=1)
                logits = model(inputs_embeds=x, attention_mask=amask).logits[:, L - 1:L - 1 + m].float()
                return torch.gather(F.log_softmax(logits, -1), 2, tid.unsqueeze(-1)).squeeze(-1)

            lp = logp(self.av)
            with torch.no_grad():
                lr_ = logp(ref)
            d = lr_ - lp
            kl = (torch.exp(d) - d - 1) * tmask
            ntok = tmask.sum(dim=1).clamp_min(1)
            pg = -(adv.detach() * (lp * tmask).sum(dim=1) / ntok)
            loss = pg.mean() + cfg.kl_coef * (kl.sum(dim=1) / ntok).mean()
            opt_av.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.av.parameters(), 1.0)
            opt_av.step()
            kls.append(float((kl.sum(dim=1) / ntok).mean().detach()))
            # the AR regressed on the sampled explanations in the same step (detached text)
            self.ar.train()
            loss_ar, _ = self._ar_loss(texts, v)
            opt_ar.zero_grad()
            loss_ar.backward()
            opt_ar.step()
            if step % 5 == 0 or step == cfg.rl_steps - 1:
                self.progress("rl", {"step": step + 1, "of": cfg.rl_steps, "reward": rewards[-1], "kl": kls[-1]})
        self.av.eval()
        self.ar.eval()
        k = max(1, min(5, len(rewards) // 3))
        rep.rl_reward = [sum(rewards[:k]) / k, sum(rewards[-k:]) / k]
        rep.rl_kl = sum(kls[-k:]) / k
        rep.rl_explanations_per_s = n_expl / max(t_gen, 1e-9)
        rep.rl_steps_per_s = cfg.rl_steps / max(time.perf_counter() - t_rl, 1e-9)


def train_nla(target: str | Path, items: Sequence[tuple[str, str]], out_dir: str | Path, cfg: TrainConfig,
              summarizer=None, langs=None, progress=None) -> TrainReport:
    """Train an AV + AR for ``target`` at ``cfg.layer`` on (prompt, reply) items; write to ``out_dir``."""
    return NLATrainer(target, cfg, summarizer=summarizer, progress=progress).fit(items, out_dir, langs=langs)


def train_from_dataset(ws, dataset: str, target: str | Path, out_dir: str | Path, cfg: TrainConfig,
                       limit: int | None = None, summarizer=None, progress=None) -> TrainReport:
    """Workspace entry point: the dataset's samples (prompt, reply, detected languages) as texts."""
    ws.require_dataset(dataset)
    q = ("SELECT prompt, reply, prompt_lang, reply_lang FROM samples WHERE dataset = ? "
         "ORDER BY sample_id")
    rows = ws.rows(q + (" LIMIT ?" if limit else ""), [dataset, limit] if limit else [dataset])
    if not rows:
        raise InputError(f"dataset {dataset!r} has no samples")
    items = [(r[0] or "", r[1] or "") for r in rows]
    langs = [(r[2], r[3]) for r in rows]
    if any(a is None and b is None for a, b in langs):
        langs = None
    return train_nla(target, items, out_dir, cfg, summarizer=summarizer, langs=langs, progress=progress)
