"""Per-row features a triage derives from a dataset's text, cached in DuckDB per dataset state.

Why a cache: every triage needs, for every row, the normalised token strings of prompt and
reply (for phrase matching) and the language the prompt asks for (the hard negatives of a
language switch). Deriving them is the costliest part of a triage (regex normalisation, and
:func:`forensics.language.requests.requested_language`, a per-prompt Python analysis) while they
depend only on the rows' text: they are computed once per dataset state, stored in
``triage_row_features`` / ``triage_tokens``, and read back in a fraction of that by later triages,
in this process or any other (the CLI starts a new process per command).

Validity: the cache records the dataset version, row count, max sample id and a fingerprint
of (sample_id, prompt, reply) over all rows, plus :data:`FEATURE_VERSION` (bump it when the
derivation changes); any mismatch recomputes. A read-only workspace computes without storing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace

# bump when the derivation changes: every cached feature set is then recomputed
FEATURE_VERSION = "6"  # 4: request reader (CLDR names, gloss lists, "X translation" needs an ask);
#                         5: expected_lang / expected_reason; 6: passage headers,
#                         statements about a language, wish/need cues

# columns a triage reads for every row (text kept for labels, examples and profiles)
_BASE_COLS = ("sample_id, row_id, prompt, reply, prompt_lang, reply_lang, reply_lang_conf, "
              "CAST(meta AS VARCHAR) AS meta")


@dataclass
class RowFeatures:
    """The dataset's rows (``sample_id`` order): ids, detected languages, ``meta``, and the
    derived ``reply_norm``, ``prompt_norm`` (normalised text, see :mod:`forensics.triage.text`),
    ``requested_lang``, ``translation_request``, ``expected_lang``, ``expected_reason`` (see
    :func:`request_columns`; not the raw prompt/reply text: a triage needs
    it for a few examples only); ``cached`` says whether they came from the cache, ``stored``
    whether the token index is in DuckDB (else :meth:`hits` scans)."""

    frame: pl.DataFrame
    cached: bool
    seconds: float
    ws: "Workspace | None" = None
    dataset: str = ""
    stored: bool = False
    state: dict | None = None     # what the features were derived from (recorded per run)

    def hits(self, field: str):
        """:class:`forensics.triage.text.Hits` over the reply (``"reply"``) or prompt
        column, backed by the stored token index when there is one."""
        from forensics.triage.text import Hits

        col = self.frame["reply_norm" if field == "reply" else "prompt_norm"]
        post = TokenPostings(self.ws, self.dataset, field) if self.stored and self.ws else None
        return Hits(col, postings=post)


class TokenPostings:
    """Token -> sorted row positions, read from ``triage_tokens`` for the tokens asked (one
    join per batch of tokens; nothing is loaded up front)."""

    def __init__(self, ws: "Workspace", dataset: str, field: str):
        self.ws, self.dataset, self.field = ws, dataset, field

    def get(self, tokens) -> dict:
        import numpy as np

        from forensics._arrow import flat_values

        tokens = list(tokens)
        if not tokens:
            return {}
        # a list parameter, not a registered Arrow table: registering one makes DuckDB import
        # pandas, a large import for a CLI process
        with self.ws.locked() as con:
            tb = con.sql(
                "SELECT token, rows FROM triage_tokens WHERE dataset = ? AND field = ? "
                "AND token IN (SELECT unnest(?::VARCHAR[]))",
                params=[self.dataset, self.field, tokens]).to_arrow_table()
        # one flat array + offsets (no Python list per token)
        flat, off = flat_values(tb.column("rows"))  # no pyarrow to_numpy: it imports pandas
        flat = flat.astype(np.int64)
        toks = tb.column("token").to_pylist()
        return {t: flat[off[i]:off[i + 1]] for i, t in enumerate(toks)}


def _state(ws: "Workspace", dataset: str) -> tuple[int, int, int, str]:
    row = ws.one("SELECT count(*), coalesce(max(sample_id), 0), "
                 "coalesce(bit_xor(hash(sample_id, prompt, reply)), 0) FROM samples "
                 "WHERE dataset = ?", [dataset])
    ver = ws.one("SELECT version FROM datasets WHERE name = ?", [dataset])
    return (int(ver[0]) if ver else -1, int(row[0]), int(row[1]), f"{int(row[2]):016x}")


def _arrow_frame(ws: "Workspace", sql: str, params: list) -> pl.DataFrame:
    # through Arrow: faster than the relation's own polars conversion
    return pl.from_arrow(ws.con.sql(sql, params=params).to_arrow_table())  # type: ignore[return-value]


def derive(df: pl.DataFrame) -> pl.DataFrame:
    """Add the derived columns to a frame with ``prompt`` and ``reply``.

    ``requested_lang`` / ``translation_request`` come from :mod:`forensics.language.requests` (the one
    piece of code that decides what a prompt asks for, shared with the mistranslation
    pipeline check), evaluated once per distinct prompt (:func:`request_columns`).
    """
    from forensics.triage.text import norm_expr

    return request_columns(df).with_columns(norm_expr("reply").alias("reply_norm"),
                                            norm_expr("prompt").alias("prompt_norm"))


_NO_LANG = "xx"  # stands for "the row's own prompt_lang" while expectations are per prompt


def request_columns(df: pl.DataFrame) -> pl.DataFrame:
    """Add, for every row, ``requested_lang`` (language the prompt asks the reply to be in, or
    null) and ``translation_request`` (bool) from :func:`forensics.language.requests.analyse`
    (the hard negatives of a language-switch anomaly), and ``expected_lang`` /
    ``expected_reason`` from :func:`forensics.language.expected.expected_language` (the
    language the reply should be in and why: ``request``, ``translation``,
    ``prompt_language`` with the row's detected ``prompt_lang``, or ``unknown``), both
    evaluated once per distinct prompt."""
    from forensics.language import requests
    from forensics.language.expected import expected_language

    prompts = df["prompt"].fill_null("")
    uniq = prompts.unique(maintain_order=True).to_list()
    res = [requests.analyse(p) for p in uniq]
    exp = [expected_language(p, _NO_LANG) if p else None for p in uniq]
    asked = [e is not None and e.reason in ("request", "translation") for e in exp]
    table = pl.DataFrame({"_pk": uniq, "requested_lang": [r[0] for r in res],
                          "translation_request": [bool(r[1]) for r in res],
                          "_el": [e.lang if a else None for e, a in zip(exp, asked)],
                          "_er": [e.reason if a else None for e, a in zip(exp, asked)]},
                         schema={"_pk": pl.Utf8, "requested_lang": pl.Utf8,
                                 "translation_request": pl.Boolean, "_el": pl.Utf8,
                                 "_er": pl.Utf8})
    out = (df.with_columns(prompts.alias("_pk"))
           .join(table, on="_pk", how="left", maintain_order="left").drop("_pk"))
    pl_ok = pl.col("prompt_lang").is_not_null() if "prompt_lang" in df.columns else pl.lit(False)
    own = pl.col("prompt_lang") if "prompt_lang" in df.columns else pl.lit(None, pl.Utf8)
    return out.with_columns(
        pl.when(pl.col("_er").is_not_null()).then(pl.col("_el")).otherwise(own)
        .alias("expected_lang"),
        pl.when(pl.col("_er").is_not_null()).then(pl.col("_er"))
        .when(pl_ok).then(pl.lit("prompt_language")).otherwise(pl.lit("unknown"))
        .alias("expected_reason")).drop("_el", "_er")


def token_postings(col: pl.Series) -> pl.DataFrame:
    """``token, rows`` (sorted int32 row positions) for every token of a normalised column."""
    return (pl.DataFrame({"t": col.str.strip_chars().str.split(" ")}).with_row_index("r")
            .explode("t").filter(pl.col("t").is_not_null() & (pl.col("t") != ""))
            .unique(["r", "t"])
            .group_by("t").agg(pl.col("r").sort().cast(pl.Int32).alias("rows"))
            .rename({"t": "token"}).sort("token"))


def load(ws: "Workspace", dataset: str, store: bool = True) -> RowFeatures:
    """The dataset's rows with derived features, from the cache when it is valid.

    The workspace is held (:meth:`~forensics.workspace.Workspace.locked`) while the rows are
    read and while computed features are stored, not while they are computed."""
    t0 = time.perf_counter()
    with ws.locked():
        state = _state(ws, dataset)
        info = {"feature_version": FEATURE_VERSION, "dataset_version": state[0], "rows": state[1],
                "max_sample_id": state[2], "fingerprint": state[3]}
        have = ws.one("SELECT feature_version, dataset_version, rows, max_sample_id, fingerprint "
                      "FROM triage_feature_sets WHERE dataset = ?", [dataset])
        if have is not None and (have[0], int(have[1]), int(have[2]), int(have[3]), have[4]) == \
                (FEATURE_VERSION, *state):
            df = _arrow_frame(
                ws, "SELECT s.sample_id, s.row_id, s.prompt_lang, s.reply_lang, "
                    "s.reply_lang_conf, CAST(s.meta AS VARCHAR) AS meta, f.requested_lang, "
                    "f.translation_request, f.expected_lang, f.expected_reason, "
                    "f.nr AS reply_norm, f.np AS prompt_norm "
                    "FROM samples s JOIN triage_row_features f "
                    "ON f.dataset = s.dataset AND f.sample_id = s.sample_id "
                    "WHERE s.dataset = ? ORDER BY s.sample_id", [dataset])
            if df.height == state[1]:
                return RowFeatures(df, True, time.perf_counter() - t0, ws, dataset, True, info)
        df = _arrow_frame(ws, f"SELECT {_BASE_COLS} FROM samples WHERE dataset = ? "
                              "ORDER BY sample_id", [dataset])
    if df.height == 0:
        df = df.with_columns(pl.lit(None, pl.Utf8).alias("requested_lang"),
                             pl.lit(None, pl.Boolean).alias("translation_request"),
                             pl.lit(None, pl.Utf8).alias("expected_lang"),
                             pl.lit(None, pl.Utf8).alias("expected_reason"),
                             pl.lit(None, pl.Utf8).alias("reply_norm"),
                             pl.lit(None, pl.Utf8).alias("prompt_norm")
                             ).drop("prompt", "reply")
        return RowFeatures(df, False, time.perf_counter() - t0, ws, dataset, False, info)
    df = derive(df)
    secs = time.perf_counter() - t0
    stored = False
    if store and not ws.read_only:
        with ws.locked():
            _store(ws, dataset, df, state, secs)
        stored = True
    df = df.drop("prompt", "reply")
    return RowFeatures(df, False, time.perf_counter() - t0, ws, dataset, stored, info)


def _store(ws: "Workspace", dataset: str, df: pl.DataFrame, state: tuple, secs: float) -> None:
    part = df.select(pl.lit(dataset).alias("dataset"), "sample_id", pl.col("reply_norm").alias("nr"),
                     pl.col("prompt_norm").alias("np"), "requested_lang", "translation_request",
                     "expected_lang", "expected_reason")
    name = "_triage_row_features_new"
    with ws.transaction() as con:
        con.execute("DELETE FROM triage_row_features WHERE dataset = ?", [dataset])
        con.execute("DELETE FROM triage_feature_sets WHERE dataset = ?", [dataset])
        con.execute("DELETE FROM triage_tokens WHERE dataset = ?", [dataset])
        for fld, col in (("reply", "reply_norm"), ("prompt", "prompt_norm")):
            tok = token_postings(df[col])
            con.register("_triage_tokens_new", tok)
            con.execute("INSERT INTO triage_tokens SELECT ?, ?, token, rows "
                        "FROM _triage_tokens_new", [dataset, fld])
            con.unregister("_triage_tokens_new")
        con.register(name, part)
        con.execute(f"INSERT INTO triage_row_features (dataset, sample_id, nr, np, "
                    f"requested_lang, translation_request, expected_lang, expected_reason) "
                    f"SELECT dataset, sample_id, nr, np, requested_lang, translation_request, "
                    f"expected_lang, expected_reason FROM {name}")
        con.unregister(name)
        con.execute("INSERT INTO triage_feature_sets (dataset, feature_version, dataset_version, "
                    "rows, max_sample_id, fingerprint, seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [dataset, FEATURE_VERSION, *state, secs])

__all__ = ["FEATURE_VERSION", "RowFeatures", "TokenPostings", "derive", "load", "request_columns",
           "token_postings"]
