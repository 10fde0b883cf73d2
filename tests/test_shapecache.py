"""The stored comment lines of fenced code (``triage_code_shapes``, forensics.triage.shapecache)
on a real workspace (real ingest, real DuckDB): filled once, reused without lexing, refreshed
for a row whose text changed, an interrupted fill resumes where it stopped, and what it answers
is what lexing every row answers."""

from __future__ import annotations

import hashlib

import pytest

import forensics
from forensics import ingest
from forensics.triage import codeshape, shapecache

FB, MW = ("python", "c", "sql", "html"), 3
_REAL = codeshape.comment_lines


@pytest.fixture()
def ws(tmp_path, xquad_dir):
    from forensics.testing.dev_families import build_dev_families

    c = build_dev_families(xquad_dir, seed=4, n_clean=30, n_code=12, n_planted=8, n_hard=5,
                           families=("code_quirk", "code_tail"))
    w = forensics.init(tmp_path / "ws")
    ingest.ingest(w, c.write_jsonl(tmp_path / "train.jsonl"), "train",
                  meta_fields=["source", "topic"])
    yield w
    w.close()


def _code_rows(ws) -> dict[int, str]:
    got = ws.sql("SELECT sample_id, reply FROM samples WHERE dataset = 'train' "
                 "AND contains(reply, '```') ORDER BY sample_id")
    return dict(zip(got["sample_id"].to_list(), got["reply"].to_list()))


def _expected(ws, shape: str) -> list[tuple[int, str]]:
    """(sample_id, first comment of ``shape``) by lexing every fenced reply now."""
    out = []
    for sid, reply in _code_rows(ws).items():
        t = next((c.text for c in codeshape.comment_lines(reply, FB, MW) if c.shape == shape),
                 None)
        if t is not None:
            out.append((sid, t))
    return out


class _Stop(RuntimeError):
    pass


class _Counting:
    """``comment_lines`` counting its calls; raises _Stop (standing for a kill) after ``stop`` calls."""

    def __init__(self, stop: int | None = None):
        self.calls, self.stop, self.real = 0, stop, _REAL

    def __call__(self, *a, **k):
        if self.stop is not None and self.calls >= self.stop:
            raise _Stop("interrupted fill")
        self.calls += 1
        return self.real(*a, **k)


def _stored(ws) -> int:
    return ws.one("SELECT count(*) FROM triage_code_shapes WHERE dataset = 'train'")[0]


def test_filled_once_reused_and_same_as_lexing(ws, monkeypatch):
    code = _code_rows(ws)
    assert len(code) > 20
    spy = _Counting()
    monkeypatch.setattr(codeshape, "comment_lines", spy)
    st = shapecache.fill(ws, "train", FB, MW)
    assert st == {"missing": len(code), "lexed": len(set(code.values())), "stored": len(code)}
    assert spy.calls == len(set(code.values())) and _stored(ws) == len(code)
    # a second fill, and the reads a triage makes, lex nothing
    spy.calls = 0
    assert shapecache.fill(ws, "train", FB, MW) == {"missing": 0, "lexed": 0, "stored": 0}
    for shape in ("last:top:foreign", "first:top:foreign"):
        rows, n_code, lexed = shapecache.shape_rows(ws, "train", shape, FB, MW)
        monkeypatch.setattr(codeshape, "comment_lines", spy.real)
        assert [(s, t) for s, t, _ in rows] == _expected(ws, shape)
        monkeypatch.setattr(codeshape, "comment_lines", spy)
        assert n_code == len(code) and lexed == 0
    assert spy.calls == 0
    assert any(shapecache.shape_rows(ws, "train", "last:top:foreign", FB, MW)[0])
    # another lexer configuration is stored beside, not over, the first
    assert shapecache.fill(ws, "train", ("python",), MW)["stored"] == len(code)
    assert _stored(ws) == 2 * len(code)


def test_a_changed_row_is_lexed_again(ws, monkeypatch):
    shapecache.fill(ws, "train", FB, MW)
    before = shapecache.shape_rows(ws, "train", "last:top:foreign", FB, MW)[0]
    sid, _, _ = before[0]
    new = "Here it is:\n```python\nx = compute()\n# totally unrelated farewell\n```"
    prompt = ws.one("SELECT prompt FROM samples WHERE sample_id = ?", [sid])[0]
    h = hashlib.sha256(f"{prompt}\x1f{new}".encode()).hexdigest()
    ws.execute("UPDATE samples SET reply = ?, content_hash = ? WHERE sample_id = ?",
               [new, h, sid])
    spy = _Counting()
    monkeypatch.setattr(codeshape, "comment_lines", spy)
    assert shapecache.fill(ws, "train", FB, MW) == {"missing": 1, "lexed": 1, "stored": 1}
    assert spy.calls == 1 and _stored(ws) == len(_code_rows(ws))
    after = shapecache.shape_rows(ws, "train", "last:top:foreign", FB, MW)[0]
    assert (sid, "# totally unrelated farewell") in [(s, t) for s, t, _ in after]
    assert [r for r in after if r[0] != sid] == [r for r in before if r[0] != sid]
    # a row whose reply loses its code leaves the shape rows
    ws.execute("UPDATE samples SET reply = 'no code', content_hash = 'x' WHERE sample_id = ?",
               [sid])
    assert sid not in [s for s, _, _ in shapecache.shape_rows(ws, "train", "last:top:foreign",
                                                              FB, MW)[0]]


def test_an_interrupted_fill_resumes(ws, monkeypatch):
    code = _code_rows(ws)
    distinct = len(set(code.values()))
    # the fill dies part-way (after 12 lexes; chunks of 5 rows)
    spy = _Counting(stop=12)
    monkeypatch.setattr(codeshape, "comment_lines", spy)
    with pytest.raises(_Stop):
        shapecache.fill(ws, "train", FB, MW, chunk_rows=5)
    kept = _stored(ws)
    assert 0 < kept < len(code) and kept % 5 == 0   # whole chunks committed, the last rolled back
    spy2 = _Counting()
    monkeypatch.setattr(codeshape, "comment_lines", spy2)
    st = shapecache.fill(ws, "train", FB, MW, chunk_rows=5)
    assert st["missing"] == len(code) - kept and st["stored"] == len(code) - kept
    assert spy2.calls < distinct and _stored(ws) == len(code)
    monkeypatch.setattr(codeshape, "comment_lines", spy2.real)
    assert [(s, t) for s, t, _ in shapecache.shape_rows(
        ws, "train", "last:top:foreign", FB, MW)[0]] == _expected(ws, "last:top:foreign")


def test_read_only_workspace_lexes_without_storing(ws, tmp_path):
    expected = _expected(ws, "last:top:foreign")
    root = ws.root
    ws.close()
    with forensics.open(root, read_only=True) as ro:
        rows, n_code, lexed = shapecache.shape_rows(ro, "train", "last:top:foreign", FB, MW)
        assert [(s, t) for s, t, _ in rows] == expected and lexed > 0
        assert _stored(ro) == 0
