"""The row writer the labelled dev generators share: one call per row gives it a stable id,
draws its source, and records its label and, for behaviour rows, the prompt's judgement.

The id is the first 10 hex digits of ``sha1(f"{seed}:{salt}{index}")`` after ``id_prefix``
(``index``: rows written so far), so a generator's ids depend only on its arguments and
order of writes; two generators writing into one corpus use different ``salt`` values.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class RowWriter:
    """Accumulates ``records`` (dicts: id, prompt, reply, source, topic), ``labels`` (id ->
    ``clean`` / ``planted:<family>`` / ``hard:<family>``) and ``judgement`` (id -> ``defect``
    for planted rows, ``legitimate`` for hard negatives).

    ``sources``: the source names; a planted row is drawn from ``sources[1:3]`` with
    probability 0.8, any other row from all of them. ``clean_topic``: the topic of clean rows
    (a behaviour row's topic is its family). ``rng``: the stream the source draws come from
    unless :meth:`add` is given another. Callers may reorder ``records`` in place."""

    seed: int
    id_prefix: str
    sources: Sequence[str]
    clean_topic: str
    rng: random.Random
    salt: str = ""
    records: list[dict] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    judgement: dict[str, str] = field(default_factory=dict)

    def add(self, prompt: str, reply: str, label: str, r: random.Random | None = None) -> str:
        """Append one row labelled ``label``, its source drawn from ``r`` (default the
        writer's ``rng``); returns its id."""
        r = self.rng if r is None else r
        h = hashlib.sha1(f"{self.seed}:{self.salt}{len(self.records)}".encode()).hexdigest()[:10]
        rid = f"{self.id_prefix}{h}"
        planted = label.startswith("planted:")
        src = r.choice(self.sources[1:3]) if planted and r.random() < 0.8 \
            else r.choice(self.sources)
        self.records.append({"id": rid, "prompt": prompt, "reply": reply, "source": src,
                             "topic": label.split(":")[-1] if label != "clean"
                             else self.clean_topic})
        self.labels[rid] = label
        if label.split(":")[0] in ("planted", "hard"):
            self.judgement[rid] = "defect" if planted else "legitimate"
        return rid


__all__ = ["RowWriter"]
