"""Anomalies: an observed misbehaviour plus the NLA explanations of the activations behind it.

Why a module of its own: an anomaly is the query of a triage and outlives any one run
(several datasets, several parameter settings); it is stored once in ``anomalies`` with its
explanations in ``explanations`` (``anomaly_id`` set, ``position = 'given'``), so the
explanations sit in the same table as sample explanations and can be compared with SQL.

Explanation files may hold raw activation-verbaliser output: the text inside each
``<explanation>...</explanation>`` is one explanation; a file without tags is one
explanation as a whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from forensics.errors import InputError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace

_TAG = re.compile(r"<explanation>(.*?)(?:</explanation>|\Z)", re.DOTALL | re.IGNORECASE)
MAX_TEXT = 64 * 1024


@dataclass
class Anomaly:
    anomaly_id: int
    title: str
    prompt: str | None
    reply: str | None
    prompt_lang: str | None
    reply_lang: str | None
    explanations: list[str] = field(default_factory=list)
    meta: dict | None = None
    created_at: str | None = None

    @property
    def switches_language(self) -> bool:
        """Both languages are known and differ (a language behaviour)."""
        return bool(self.prompt_lang and self.reply_lang and self.prompt_lang != self.reply_lang)


def extract_explanations(text: str) -> list[str]:
    """Explanations inside ``<explanation>`` tags (an unclosed final tag runs to the end);
    the whole text when there are no tags. Blank results are dropped.

    Why dedent: AV transcripts indent the explanation block; the paragraphs matter, the
    indentation does not.
    """
    found = _TAG.findall(text)
    parts = found if found else [text]
    out = []
    for p in parts:
        lines = [ln.strip() for ln in p.strip().splitlines()]
        cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if cleaned:
            out.append(cleaned)
    return out


def read_explanation_file(path: str | Path) -> list[str]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read explanation file {p}: {e.strerror or e}",
                         hint="check the path given to --explanation-file") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"explanation file {p} is not UTF-8 (byte {e.start})",
                         hint="convert it to UTF-8") from e
    got = extract_explanations(text)
    if not got:
        raise InputError(f"explanation file {p} holds no explanation text",
                         hint="put the text (or <explanation>...</explanation> blocks) in the file")
    return got


def add(ws: "Workspace", title: str, prompt: str | None = None, reply: str | None = None,
        explanations: Sequence[str] = (), meta: dict | None = None,
        nla_id: str | None = None) -> int:
    """Store an anomaly and its explanations; return the new ``anomaly_id``."""
    if not title or not title.strip():
        raise InputError("an anomaly needs a non-empty --title")
    prompt = prompt if prompt and prompt.strip() else None
    reply = reply if reply and reply.strip() else None
    expl = [e.strip() for e in explanations if e and e.strip()]
    for name, val in (("title", title), ("prompt", prompt), ("reply", reply)):
        if val is not None and len(val) > MAX_TEXT:
            raise InputError(f"--{name} is {len(val)} characters; the limit is {MAX_TEXT}")
    for i, e in enumerate(expl):
        if len(e) > MAX_TEXT:
            raise InputError(f"explanation {i + 1} is {len(e)} characters; the limit is {MAX_TEXT}")
    if not (prompt or reply or expl):
        raise InputError("an anomaly needs at least one of --prompt, --reply, --explanation",
                         hint="give the observed prompt/reply or an NLA explanation of it")
    from forensics.language import detect as langid

    det = langid.detect([prompt, reply])
    aid = ws.next_id("anomaly_id_seq")
    with ws.transaction() as con:
        con.execute(
            "INSERT INTO anomalies (anomaly_id, title, prompt, reply, prompt_lang, reply_lang, meta) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [aid, title.strip(), prompt, reply, det[0].lang, det[1].lang,
             json.dumps(meta or {}, ensure_ascii=False)])
        for pos, text in enumerate(expl):
            eid = ws.next_id("explanation_id_seq")
            con.execute(
                "INSERT INTO explanations (explanation_id, anomaly_id, nla_id, position, "
                "token_index, text, raw_output, explanation_key) VALUES (?, ?, ?, 'given', ?, ?, ?, ?)",
                [eid, aid, nla_id or "given", pos, text, text, f"anomaly:{aid}|given|{pos}"])
    return aid


#: Orders the samples of one explained activation, best first: lowest AR mse, unscored last,
#: then the first sample. ``PARTITION BY`` the owner plus these columns names one activation.
BEST_SAMPLE_WINDOW = ("row_number() OVER (PARTITION BY {owner}, nla_id, position, token_index, layer, "
                      "hidden_state_index ORDER BY mse ASC NULLS LAST, sample_index, explanation_id)")


def get(ws: "Workspace", anomaly_id: int, samples: str = "best") -> Anomaly:
    """The anomaly and its explanations; ``samples`` ``best`` keeps one explanation per
    explained position (the best-scored of its samples), ``all`` keeps every sample."""
    row = ws.one("SELECT anomaly_id, title, prompt, reply, prompt_lang, reply_lang, meta, "
                 "CAST(created_at AS VARCHAR) FROM anomalies WHERE anomaly_id = ?", [int(anomaly_id)])
    if row is None:
        raise NotFoundError(f"anomaly {anomaly_id} not found",
                            hint="list them with: forensics anomaly list")
    if samples not in ("best", "all"):
        raise InputError(f"explanation samples {samples!r}: choose best or all")
    keep = "" if samples == "all" else f"QUALIFY {BEST_SAMPLE_WINDOW.format(owner='anomaly_id')} = 1 "
    expl = [r[0] for r in ws.rows(
        "SELECT text FROM (SELECT text, token_index, explanation_id FROM explanations "
        f"WHERE anomaly_id = ? {keep}) ORDER BY token_index NULLS LAST, explanation_id",
        [int(anomaly_id)])]
    meta = json.loads(row[6]) if isinstance(row[6], str) and row[6] else row[6]
    return Anomaly(int(row[0]), row[1], row[2], row[3], row[4], row[5], expl, meta, row[7])


def list_all(ws: "Workspace") -> list[dict]:
    rows = ws.rows(
        "SELECT a.anomaly_id, a.title, a.prompt_lang, a.reply_lang, "
        "count(e.explanation_id) AS explanations, "
        "(SELECT count(*) FROM triage_runs t WHERE t.anomaly_id = a.anomaly_id) AS runs, "
        "CAST(a.created_at AS VARCHAR) FROM anomalies a "
        "LEFT JOIN explanations e ON e.anomaly_id = a.anomaly_id "
        "GROUP BY a.anomaly_id, a.title, a.prompt_lang, a.reply_lang, a.created_at "
        "ORDER BY a.anomaly_id")
    keys = ["anomaly_id", "title", "prompt_lang", "reply_lang", "explanations", "triage_runs",
            "created_at"]
    return [dict(zip(keys, r)) for r in rows]


__all__ = ["Anomaly", "add", "get", "list_all", "extract_explanations", "read_explanation_file"]
