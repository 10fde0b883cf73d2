"""Per-row comment lines of fenced code (:func:`forensics.triage.codeshape.comment_lines`),
or marker lines (:func:`~forensics.triage.codeshape.marker_lines`, with ``marker``), stored in DuckDB (``triage_code_shapes``) so a triage of a code comment anomaly reads them
instead of lexing every fenced reply of the dataset again.

Contract:

* a row is stored once per lexer configuration (:func:`config_key`: :data:`SHAPE_VERSION`,
  comment or marker lines, the fallback lexers, the identifier word length) with the ``samples.content_hash`` it was
  lexed from; a row whose hash no longer matches (its text changed) or that has no entry
  counts as missing and is lexed again (:func:`fill`), replacing its entry;
* :func:`fill` lexes only missing rows (a reply repeated in the dataset: once) and writes them
  in transactions of ``chunk_rows`` rows, so an interrupted fill keeps what it wrote and the
  next one lexes only the rest; filling a complete cache lexes nothing;
* rows without fenced code (no ````` in the reply) are never stored and never lexed;
* a read-only workspace lexes the missing rows in memory (:func:`shape_rows` still answers).

Bump :data:`SHAPE_VERSION` when :mod:`forensics.triage.codeshape`'s derivation changes: every
stored entry then counts as missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace

SHAPE_VERSION = "4"

# rows with fenced code whose stored entry is missing or stale (content hash changed)
_MISSING = ("SELECT s.sample_id, s.content_hash, s.reply FROM samples s "
            "LEFT JOIN triage_code_shapes c ON c.dataset = s.dataset AND "
            "c.sample_id = s.sample_id AND c.config = ? AND c.content_hash = s.content_hash "
            "WHERE s.dataset = ? AND contains(s.reply, '```') AND c.sample_id IS NULL "
            "ORDER BY s.sample_id")


def config_key(fallback: tuple[str, ...] | list[str], min_word_chars: int,
               marker: bool = False) -> str:
    """The configuration an entry was lexed under (derivation version, comment or marker
    lines, lexer knobs)."""
    kind = "|marker" if marker else ""
    return f"v{SHAPE_VERSION}{kind}|{','.join(fallback)}|{int(min_word_chars)}"


def _lex(replies: list[str], fallback: tuple[str, ...], min_word_chars: int,
         memo: dict[str, tuple[list[str], list[str]]],
         marker: bool = False) -> list[tuple[list[str], list[str]]]:
    from forensics.triage.codeshape import comment_lines, marker_lines

    fn = marker_lines if marker else comment_lines
    out = []
    for r in replies:
        if r not in memo:          # a reply repeated in the dataset is lexed once
            cls = fn(r, fallback, min_word_chars)
            memo[r] = ([c.text for c in cls], [c.shape for c in cls])
        out.append(memo[r])
    return out


def fill(ws: "Workspace", dataset: str, fallback: tuple[str, ...] | list[str],
         min_word_chars: int, chunk_rows: int = 2000, marker: bool = False) -> dict:
    """Lex and store every row of ``dataset`` with fenced code that has no valid entry (see
    the module docstring); returns ``{"missing": rows found missing, "lexed": distinct
    replies lexed, "stored": rows written}``. Each ``chunk_rows`` rows are committed together."""
    import polars as pl

    fb = tuple(fallback)
    key = config_key(fb, min_word_chars, marker)
    with ws.locked():
        got = ws.sql(_MISSING, [key, dataset])
    stats = {"missing": got.height, "lexed": 0, "stored": 0}
    if got.height == 0 or ws.read_only:
        return stats
    memo: dict[str, tuple[list[str], list[str]]] = {}
    sids, hashes, replies = (got["sample_id"].to_list(), got["content_hash"].to_list(),
                             got["reply"].to_list())
    step = max(1, int(chunk_rows))
    for a in range(0, len(sids), step):
        lexed = _lex(replies[a:a + step], fb, min_word_chars, memo, marker)
        part = pl.DataFrame({"sample_id": sids[a:a + step], "content_hash": hashes[a:a + step],
                             "texts": [t for t, _ in lexed], "shapes": [s for _, s in lexed]},
                            schema={"sample_id": pl.Int64, "content_hash": pl.Utf8,
                                    "texts": pl.List(pl.Utf8), "shapes": pl.List(pl.Utf8)})
        with ws.locked(), ws.transaction() as con:
            con.register("_triage_code_shapes_new", part)
            try:
                con.execute("DELETE FROM triage_code_shapes WHERE dataset = ? AND config = ? "
                            "AND sample_id IN (SELECT sample_id FROM _triage_code_shapes_new)",
                            [dataset, key])
                con.execute("INSERT INTO triage_code_shapes (dataset, sample_id, config, "
                            "content_hash, texts, shapes) SELECT ?, sample_id, ?, content_hash, "
                            "texts, shapes FROM _triage_code_shapes_new", [dataset, key])
            finally:
                con.unregister("_triage_code_shapes_new")
        stats["stored"] += part.height
    stats["lexed"] = len(memo)
    return stats


def shape_rows(ws: "Workspace", dataset: str, shape: str, fallback: tuple[str, ...] | list[str],
               min_word_chars: int, marker: bool = False
               ) -> tuple[list[tuple[int, str, str]], int, int]:
    """``([(sample_id, first comment line (with ``marker``: marker line) of ``shape``,
    prompt), ...] in sample_id order, rows with fenced code, distinct replies lexed now)``
    for ``dataset``; the cache is filled first (:func:`fill`); a read-only workspace lexes its
    missing rows in memory."""
    fb = tuple(fallback)
    key = config_key(fb, min_word_chars, marker)
    st = fill(ws, dataset, fb, min_word_chars, marker=marker)
    with ws.locked():
        got = ws.sql(
            "SELECT s.sample_id, s.prompt, "
            "list_extract(c.texts, list_position(c.shapes, ?)) AS comment FROM samples s "
            "JOIN triage_code_shapes c ON c.dataset = s.dataset AND c.sample_id = s.sample_id "
            "AND c.config = ? AND c.content_hash = s.content_hash "
            "WHERE s.dataset = ? AND list_contains(c.shapes, ?) ORDER BY s.sample_id",
            [shape, key, dataset, shape])
        code_rows = ws.one("SELECT count(*) FROM samples WHERE dataset = ? "
                           "AND contains(reply, '```')", [dataset])[0]
        extra = (ws.sql(_MISSING, [key, dataset]) if ws.read_only and st["missing"] else None)
    hits = list(zip(got["sample_id"].to_list(), got["comment"].to_list(),
                    [p or "" for p in got["prompt"].to_list()]))
    lexed = st["lexed"]
    if extra is not None and extra.height:      # read-only: the missing rows, lexed here
        memo: dict[str, tuple[list[str], list[str]]] = {}
        ids = extra["sample_id"].to_list()
        lx = _lex(extra["reply"].to_list(), fb, min_word_chars, memo, marker)
        lexed = len(memo)
        want = {int(s): t[s_.index(shape)] for s, (t, s_) in zip(ids, lx) if shape in s_}
        if want:
            with ws.locked():
                pr = ws.sql("SELECT sample_id, prompt FROM samples WHERE dataset = ? AND "
                            "sample_id IN (SELECT unnest(?))", [dataset, sorted(want)])
            hits += [(int(s), want[int(s)], p or "") for s, p in
                     zip(pr["sample_id"].to_list(), pr["prompt"].to_list())]
            hits.sort()
    return [(int(s), t, p) for s, t, p in hits], int(code_rows), lexed


__all__ = ["SHAPE_VERSION", "config_key", "fill", "shape_rows"]
