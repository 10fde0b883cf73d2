"""The SQL parse pass and its parameters.

:class:`IngestOptions` says how records map onto samples; :func:`parse_sql` turns it into ONE
DuckDB statement that takes a batch of raw records (``_raw(line_no, raw)``) to classified rows:
UTF-8 check, JSON parse, field extraction, chat-turn mapping, type/empty/size validation and the
sha256 content hash, with no per-row Python. :class:`BatchParser` runs it on the reader thread.
Record values reach DuckDB only as registered Arrow data or bound parameters, never as SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import pyarrow as pa

from forensics.ingest.sources import RAW_LIMIT, Batch

USER_ROLES = ("user", "human")
ASSISTANT_ROLES = ("assistant", "gpt", "model", "bot", "chatgpt")

DEFAULT_BATCH_ROWS = 122_880   # one DuckDB row group: inserts write row groups directly, not via the WAL
DEFAULT_MAX_CHARS = 200_000


@dataclass
class IngestOptions:
    """How records map onto samples. Field names are top-level keys of each record."""

    id_field: str | None = "id"
    prompt_field: str = "prompt"
    reply_field: str = "reply"
    meta_fields: Sequence[str] = ()
    max_chars: int = DEFAULT_MAX_CHARS
    languages: Sequence[str] | None = None     # langid candidate set (None = library default)
    langid: bool = True
    batch_rows: int = DEFAULT_BATCH_ROWS



def json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


_FILE = object()   # placeholder for the file's base name in the parse parameters
_TURN_TYPE = '[{"role":"VARCHAR","from":"VARCHAR","content":"JSON","value":"JSON"}]'
_PARTS_TYPE = '[{"type":"VARCHAR","text":"VARCHAR"}]'


def _turn_text(expr: str) -> str:
    """Text of a turn's content: a string, or OpenAI content parts joined."""
    return (f"CASE json_type({expr}) WHEN 'VARCHAR' THEN json_extract_string({expr}, '$') "
            f"WHEN 'ARRAY' THEN array_to_string(list_transform(try(from_json({expr}, '{_PARTS_TYPE}')),"
            f" lambda x: x.text), '') END")


# characters a blank text may consist of: whitespace (ASCII and Unicode separators such as
# NBSP and U+3000), control characters, and format characters (zero-width space/joiners,
# word joiner, BOM, bidi marks), as RE2's Unicode category tables define them
BLANK_CLASS = r"\s\p{Z}\p{Cc}\p{Cf}"


def _blank(x: str) -> str:
    """SQL: ``x`` is empty or made only of :data:`BLANK_CLASS` characters. One RE2 search for
    the first non-blank character; it stops at the first character of ordinary text (1M texts
    of 330-700 characters: 0.18 s, the same as an ASCII-only first-character prefilter)."""
    return f"(NOT regexp_matches({x}, '[^{BLANK_CLASS}]'))"


def parse_sql(opts: IngestOptions, binary: bool = False) -> tuple[str, list[Any]]:
    """One SQL statement turning ``_raw(line_no, raw)`` into classified rows.

    Output columns: line_no, row_id, prompt, reply, record, meta, n_turns, content_hash,
    reason, field, raw_text. ``reason`` NULL means the row is valid.

    ``raw`` is VARCHAR (the batch is valid UTF-8, checked by Arrow) or, with ``binary``,
    BLOB decoded per row so that the invalid rows become ``invalid_utf8`` rejects.

    Speed (measured per 50k synthetic rows): each record is parsed exactly twice, both times
    by DuckDB's C++ JSON reader over the whole line with a *list* of paths: ``json_type``
    (root type + every needed field's type, ~0.2 s) and ``json_extract_string`` (every
    field's unescaped text, ~0.28 s). The previous pass extracted JSON fragments and parsed
    the prompt/reply fragments again per field (~0.7 s). Types come from the first parse, so
    a prompt that is a list is ``wrong_type`` without a third parse. Chat turns are parsed
    (``from_json``) only for rows whose prompt field is absent and that carry a list. No
    stage is MATERIALIZED and no raw-line copy is joined back: the line flows through once.
    """
    paths = [json_path(opts.id_field) if opts.id_field else '$."\u0000no-id"',
             json_path(opts.prompt_field), json_path(opts.reply_field),
             "$.messages", "$.conversations"] + [json_path(m) for m in opts.meta_fields]
    # ty[1] is the root type, ty[k + 1] the type of paths[k]; es[k] the text of paths[k]
    meta_expr = "NULL"
    if opts.meta_fields:
        meta_expr = "json_object(" + ", ".join(
            f"?, CASE WHEN ty[{7 + i}] = 'VARCHAR' THEN to_json(es[{6 + i}]) "
            f"ELSE es[{6 + i}]::JSON END" for i in range(len(opts.meta_fields))) + ")"
    role = "lower(coalesce(t.role, t.\"from\"))"
    user_pred = " OR ".join(f"{role} = '{r}'" for r in USER_ROLES)
    asst_pred = " OR ".join(f"{role} = '{r}'" for r in ASSISTANT_ROLES)
    line_expr = "try(decode(raw))" if binary else "raw"
    raw_expr = f"left(CAST(raw AS VARCHAR), {RAW_LIMIT})" if binary else "NULL"
    keep_raw = ", raw" if binary else ""
    sql = f"""
WITH a AS (
    SELECT line_no, {line_expr} AS line{keep_raw} FROM _raw
), b AS (
    SELECT *, CASE WHEN line IS NOT NULL AND strlen(line) <= ?
                   THEN try(json_type(line, ?::VARCHAR[])) END AS ty
    FROM a
), c AS (
    SELECT *, CASE WHEN ty[1] = 'OBJECT' THEN json_extract_string(line, ?::VARCHAR[]) END AS es
    FROM b
    -- blank lines are skipped; only unparsable lines pay for the test
    WHERE ty IS NOT NULL OR line IS NULL OR NOT {_blank('line')}
), f AS (
    SELECT line_no, line{keep_raw},
           line IS NULL AS bad_utf8, line IS NOT NULL AND strlen(line) > ? AS too_big,
           ty IS NOT NULL AS valid, ty[1] = 'OBJECT' AS obj,
           es[1] AS id_val, ty[3] AS p_type, ty[4] AS r_type,
           CASE WHEN ty[3] = 'VARCHAR' THEN es[2] END AS p_flat,
           CASE WHEN ty[4] = 'VARCHAR' THEN es[3] END AS r_flat,
           CASE WHEN ty[5] = 'ARRAY' THEN 'messages'
                WHEN ty[6] = 'ARRAY' THEN 'conversations' END AS chat_key,
           CASE WHEN ty[5] = 'ARRAY' THEN es[4] WHEN ty[6] = 'ARRAY' THEN es[5] END AS chat_json,
           CASE WHEN ty[1] = 'OBJECT' THEN {meta_expr} END AS meta
    FROM c
), t AS (
    SELECT * EXCLUDE (chat_json),
           CASE WHEN obj AND p_type IS NULL AND chat_key IS NOT NULL
                THEN try(from_json(chat_json, '{_TURN_TYPE}')) END AS turns
    FROM f
), u AS (
    SELECT *, turns IS NOT NULL AS is_chat,
           CASE WHEN turns IS NOT NULL THEN list_filter(turns, lambda t: {user_pred})[1] END AS u_turn,
           CASE WHEN turns IS NOT NULL THEN list_filter(turns, lambda t: {asst_pred})[1] END AS a_turn
    FROM t
), x AS (
    SELECT * EXCLUDE (p_flat, r_flat, u_turn, a_turn),
           is_chat AND u_turn IS NULL AS no_user, is_chat AND a_turn IS NULL AS no_asst,
           CASE WHEN is_chat THEN {_turn_text('coalesce(u_turn.content, u_turn.value)')}
                ELSE p_flat END AS prompt,
           CASE WHEN is_chat THEN {_turn_text('coalesce(a_turn.content, a_turn.value)')}
                ELSE r_flat END AS reply
    FROM u
), y AS (
    SELECT *,
       CASE
         WHEN bad_utf8 THEN 'invalid_utf8'
         WHEN too_big THEN 'oversize'
         WHEN NOT valid THEN 'malformed_json'
         WHEN NOT obj THEN 'not_an_object'
         WHEN p_type IS NULL AND chat_key IS NOT NULL AND turns IS NULL THEN 'malformed_chat'
         WHEN no_user OR no_asst THEN 'missing_field'
         WHEN NOT is_chat AND (p_type IS NULL OR p_type = 'NULL'
                               OR r_type IS NULL OR r_type = 'NULL') THEN 'missing_field'
         WHEN prompt IS NULL OR reply IS NULL THEN 'wrong_type'
         WHEN {_blank('prompt')} OR {_blank('reply')} THEN 'empty_text'
         WHEN length(prompt) > ? OR length(reply) > ? THEN 'oversize'
       END AS reason
    FROM x
)
SELECT line_no,
       coalesce(id_val, ? || ':' || CAST(line_no AS VARCHAR)) AS row_id,
       prompt, reply, line AS record, meta,
       CASE WHEN is_chat THEN len(turns) ELSE 2 END AS n_turns,
       CASE WHEN reason IS NULL THEN sha256(prompt || chr(31) || reply) END AS content_hash,
       reason,
       CASE WHEN reason IS NULL OR bad_utf8 OR too_big OR NOT valid OR NOT obj THEN NULL
            WHEN is_chat THEN chat_key || CASE WHEN no_user OR prompt IS NULL OR {_blank('prompt')}
                                                    OR length(prompt) > ? THEN ': user turn'
                                               ELSE ': assistant turn' END
            WHEN p_type IS NULL AND chat_key IS NOT NULL AND turns IS NULL THEN chat_key
            WHEN p_type IS NULL OR p_type = 'NULL' THEN ?
            WHEN r_type IS NULL OR r_type = 'NULL' THEN ?
            WHEN prompt IS NULL THEN ?
            WHEN reply IS NULL THEN ?
            WHEN {_blank('prompt')} THEN ?
            WHEN length(prompt) > ? THEN ?
            ELSE ? END AS field,
       CASE WHEN reason IS NULL THEN NULL
            WHEN line IS NULL THEN {raw_expr}
            ELSE left(line, {RAW_LIMIT}) END AS raw_text
FROM y
"""
    max_bytes = opts.max_chars * 4 + 1_000_000
    pf, rf = opts.prompt_field, opts.reply_field
    params: list[Any] = [max_bytes, ["$"] + paths, paths, max_bytes, *opts.meta_fields,
                         opts.max_chars, opts.max_chars, _FILE, opts.max_chars,
                         pf, rf, pf, rf, pf, opts.max_chars, pf, rf]
    return sql, params


class BatchParser:
    """Runs :func:`parse_sql` over batches on a cursor of ``con`` (the workspace connection)."""

    def __init__(self, con, opts: IngestOptions):
        self.con = con
        self.sql = {False: parse_sql(opts, False), True: parse_sql(opts, True)}

    def parse(self, b: Batch, con, basename: str) -> None:
        """Run :func:`parse_sql` over the batch's raw records on ``con``; keep the result as
        Arrow on the batch (``b.parsed``) and drop the raw records (their text lives on in the
        parsed ``record`` column)."""
        sql, params = self.sql[not pa.types.is_large_string(b.raw.type)]
        params = [basename if p is _FILE else p for p in params]
        con.register("_raw", pa.table({"line_no": pa.array(b.line_no), "raw": b.raw}))
        try:
            b.parsed = con.sql(sql, params=params).to_arrow_table()
        finally:
            con.unregister("_raw")
        b.raw = None

    def parsed(self, batches: Iterator[Batch], basename: str) -> Iterator[Batch]:
        """Parse each batch as it is read, on a cursor of its own.

        Why: this generator runs in the reader thread (:class:`~forensics.ingest.readers.Prefetch`),
        so DuckDB parses batch N+1 (JSON, validation, sha256) on one core while the main
        connection inserts and commits batch N on the other; inserting is then the only serial
        step left (throughput: bench/ingest.py, docs/ingest.md). A cursor is a separate
        connection to the same database: it sees none of the main connection's temporary
        objects and its query shares nothing with the open write transaction."""
        cur = self.con.cursor()
        cur.execute("SET enable_progress_bar = false")    # stdout stays one JSON document
        try:
            for b in batches:
                if len(b.line_no):
                    self.parse(b, cur, basename)
                yield b
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            cur.close()
