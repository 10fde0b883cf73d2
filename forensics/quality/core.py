"""Pipeline model: steps, their stats, and the TOML definition loader/saver.

Why this shape (after datatrove): a pipeline is a flat list of small steps — one reader,
transforms, checks, one writer — and says nothing about WHERE it runs. Engines
(:mod:`forensics.quality.engine`) decide that: the same definition runs in-process, over a
local process pool, or on Ray. Steps are plain dataclasses whose fields are the TOML params,
so a definition round-trips TOML -> Pipeline -> TOML/dict exactly and hashes stably (the hash
identifies a run for resume).

Two kinds of check:

* row checks (``scope = "row"``) look at one batch at a time and emit findings directly;
* global checks (``scope = "global"``) need the whole dataset (duplicate groups, length
  statistics): their ``map`` runs per batch wherever batches run and returns a small Arrow
  table of per-row features; their ``reduce`` runs once in the driver over all of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from forensics.errors import InputError, NotFoundError

# --------------------------------------------------------------------------- data at boundaries
SEVERITIES = ("info", "warning", "error")

# Columns every reader produces; checks read what they need.
COLUMNS = ("sample_id", "row_id", "prompt", "reply", "content_hash", "prompt_lang",
           "prompt_lang_conf", "reply_lang", "reply_lang_conf")


@dataclass(frozen=True)
class Finding:
    """One per-row result of a check (a row of ``quality_findings``)."""

    check: str
    sample_id: int
    severity: str
    score: float
    detail: str
    group_id: str | None = None


@dataclass
class StepStats:
    """What one step did: rows in/out, findings emitted, seconds spent (summed over workers)."""

    step: str
    rows_in: int = 0
    rows_out: int = 0
    findings: int = 0
    seconds: float = 0.0

    def add(self, other: "StepStats") -> None:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.findings += other.findings
        self.seconds += other.seconds


class Batch:
    """A batch of rows as column lists (cheap to pickle to worker processes / Ray tasks)."""

    __slots__ = ("batch_id", "cols")

    def __init__(self, batch_id: int, cols: dict[str, list]):
        self.batch_id = batch_id
        self.cols = cols

    def __len__(self) -> int:
        return len(self.cols["sample_id"])

    def col(self, name: str) -> list:
        c = self.cols.get(name)
        return c if c is not None else [None] * len(self)

    def take(self, keep: list[int]) -> "Batch":
        return Batch(self.batch_id, {k: [v[i] for i in keep] for k, v in self.cols.items()})

    def with_col(self, name: str, values: list) -> "Batch":
        return Batch(self.batch_id, {**self.cols, name: values})


# --------------------------------------------------------------------------- steps
_REGISTRY: dict[str, type["Step"]] = {}


def register(type_name: str):
    """Class decorator: make a Step dataclass available under ``type = "<type_name>"``."""

    def deco(cls):
        cls.type_name = type_name
        _REGISTRY[type_name] = cls
        return cls

    return deco


def step_types() -> dict[str, type["Step"]]:
    from forensics.quality import checks, steps  # noqa: F401  (import registers the built-in steps)

    return dict(_REGISTRY)


@dataclass
class Step:
    """Base of all steps. Subclasses are dataclasses; their fields are the TOML params."""

    type_name: ClassVar[str] = ""
    kind: ClassVar[str] = "transform"  # reader | transform | check | writer
    scope: ClassVar[str] = "row"       # row | global (checks only)

    @property
    def name(self) -> str:
        return self.type_name

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not f.name.startswith("_")}

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, **self.params()}

    # transforms and row checks
    def process(self, batch: Batch) -> tuple[Batch, list[Finding]]:
        return batch, []

    # global checks: map (per batch, anywhere) and reduce (once, in the driver)
    def map(self, batch: Batch):  # -> pyarrow.Table of per-row features
        raise NotImplementedError

    def reduce(self, tables: list) -> list[Finding]:
        raise NotImplementedError

    def __getstate__(self):  # drop lazily loaded models when shipped to a worker
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state):
        self.__dict__.update(state)


@dataclass
class Pipeline:
    """An ordered list of steps plus a name. Build in code or load from TOML."""

    steps: list[Step]
    name: str = "custom"
    description: str = ""
    source: str | None = None  # file it was loaded from (not part of the definition)

    def __post_init__(self) -> None:
        from forensics.quality.steps import ReadSamples, WriteFindings

        if not self.steps or self.steps[0].kind != "reader":
            self.steps.insert(0, ReadSamples())
        if self.steps[-1].kind != "writer":
            self.steps.append(WriteFindings())
        for i, s in enumerate(self.steps):
            if s.kind == "reader" and i != 0:
                raise InputError(f"pipeline {self.name!r}: reader step {s.type_name!r} must be first")
            if s.kind == "writer" and i != len(self.steps) - 1:
                raise InputError(f"pipeline {self.name!r}: writer step {s.type_name!r} must be last")

    @property
    def reader(self) -> Step:
        return self.steps[0]

    @property
    def writer(self) -> Step:
        return self.steps[-1]

    @property
    def middle(self) -> list[Step]:
        return self.steps[1:-1]

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline": {"name": self.name, "description": self.description},
                "steps": [s.to_dict() for s in self.steps]}

    def definition_hash(self) -> str:
        """Identity of WHAT the pipeline computes (name/description excluded)."""
        blob = json.dumps([s.to_dict() for s in self.steps], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_toml(self) -> str:
        out = ["[pipeline]", f"name = {_toml_value(self.name)}",
               f"description = {_toml_value(self.description)}"]
        for s in self.steps:
            out += ["", "[[steps]]", f"type = {_toml_value(s.type_name)}"]
            for k, v in s.params().items():
                out.append(f"{k} = {_toml_value(v)}")
        return "\n".join(out) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | None = None,
                  text: str | None = None) -> "Pipeline":
        return _build(d, source or "<dict>", text)

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> "Pipeline":
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"line (\d+)", str(e))
            line = f":{m.group(1)}" if m else ""
            raise InputError(f"{source}{line}: TOML syntax error: {e}",
                             hint="fix the pipeline file; see docs/pipelines.md for the format")
        return _build(d, source, text)

    @classmethod
    def load(cls, path: str | Path) -> "Pipeline":
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFoundError(f"pipeline file not found: {p}")
        except UnicodeDecodeError as e:
            raise InputError(f"{p}: not UTF-8 text ({e})")
        return cls.from_toml(text, str(p))


# --------------------------------------------------------------------------- TOML helpers
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        raise ValueError("TOML has no null; leave the key out")
    raise ValueError(f"cannot write {type(v).__name__} to TOML")


def _step_line(text: str | None, index: int, key: str | None = None) -> int | None:
    """1-based line of the ``index``-th ``[[steps]]`` table (or of ``key`` inside it)."""
    if not text:
        return None
    lines = text.splitlines()
    heads = [i for i, ln in enumerate(lines) if re.match(r"\s*\[\[\s*steps\s*\]\]", ln)]
    if index >= len(heads):
        return None
    start = heads[index]
    if key is None:
        return start + 1
    end = len(lines)
    for i in range(start + 1, len(lines)):
        if re.match(r"\s*\[", lines[i]):
            end = i
            break
    for i in range(start, end):
        if re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", lines[i]):
            return i + 1
    return start + 1


def _top_line(text: str | None, key: str) -> int | None:
    if not text:
        return None
    for i, ln in enumerate(text.splitlines()):
        if re.match(rf"\s*\[?\s*{re.escape(key)}\b", ln):
            return i + 1
    return None


def _type_ok(value: Any, annot: Any) -> bool:
    origin = typing.get_origin(annot)
    if annot is bool:
        return isinstance(value, bool)
    if annot is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annot is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annot is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(annot) or (Any,)
        return isinstance(value, list) and all(inner is Any or _type_ok(x, inner) for x in value)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(value, a) for a in typing.get_args(annot) if a is not type(None))
    return True


def _type_name(annot: Any) -> str:
    return getattr(annot, "__name__", None) or str(annot).replace("typing.", "")


def _build(d: dict[str, Any], source: str, text: str | None) -> "Pipeline":
    types = step_types()

    def where(index: int | None = None, key: str | None = None, top: str | None = None) -> str:
        line = _step_line(text, index, key) if index is not None else _top_line(text, top or "")
        return f"{source}:{line}" if line else source

    unknown_top = set(d) - {"pipeline", "steps"}
    if unknown_top:
        k = sorted(unknown_top)[0]
        raise InputError(f"{where(top=k)}: unknown top-level key {k!r} (expected [pipeline] "
                         "and [[steps]])")
    meta = d.get("pipeline", {})
    if not isinstance(meta, dict):
        raise InputError(f"{where(top='pipeline')}: [pipeline] must be a table")
    for k in meta:
        if k not in ("name", "description"):
            raise InputError(f"{where(top=k)}: unknown key {k!r} in [pipeline] "
                             "(allowed: name, description)")
    name = meta.get("name", "custom" if source.startswith("<") else Path(source).stem)
    if not isinstance(name, str) or not isinstance(meta.get("description", ""), str):
        raise InputError(f"{where(top='name')}: pipeline name and description must be strings")
    raw_steps = d.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise InputError(f"{source}: a pipeline needs at least one [[steps]] table",
                         hint='add e.g.\n[[steps]]\ntype = "check.hygiene"')
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            raise InputError(f"{where(i)}: step {i + 1} must be a table")
        t = raw.get("type")
        if t is None:
            raise InputError(f"{where(i)}: step {i + 1} has no 'type'",
                             hint="known types: " + ", ".join(sorted(types)))
        if t not in types:
            raise InputError(f"{where(i, 'type')}: unknown step type {t!r}",
                             hint="known types: " + ", ".join(sorted(types)))
        cls = types[t]
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        kwargs = {}
        for k, v in raw.items():
            if k == "type":
                continue
            if k not in fields:
                raise InputError(f"{where(i, k)}: step {t!r} has no parameter {k!r}",
                                 hint="parameters: " + (", ".join(fields) or "(none)"))
            if not _type_ok(v, hints[k]):
                raise InputError(f"{where(i, k)}: parameter {k!r} of step {t!r} must be "
                                 f"{_type_name(hints[k])}, got {type(v).__name__} {v!r}")
            kwargs[k] = float(v) if hints[k] is float else v
        try:
            step = cls(**kwargs)
        except InputError as e:
            raise InputError(f"{where(i)}: {e.message}", hint=e.hint)
        except TypeError as e:
            raise InputError(f"{where(i)}: step {t!r}: {e}")
        steps.append(step)
    try:
        return Pipeline(steps, name=name, description=meta.get("description", ""), source=source)
    except InputError as e:
        raise InputError(f"{source}: {e.message}")


# --------------------------------------------------------------------------- shipped pipelines
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


def builtin_pipelines() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}


def load_pipeline(spec: str | Path) -> Pipeline:
    """A shipped pipeline's name (``mistranslation``) or a path to a TOML file."""
    s = str(spec)
    shipped = builtin_pipelines()
    if s in shipped and not Path(s).exists():
        return Pipeline.load(shipped[s])
    p = Path(s)
    if p.exists():
        return Pipeline.load(p)
    raise NotFoundError(f"no pipeline {s!r}: not a shipped pipeline and no such file",
                        hint="shipped: " + ", ".join(shipped) + " (forensics pipeline list)")


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


__all__ = ["Finding", "StepStats", "Batch", "Step", "Pipeline", "register", "step_types",
           "load_pipeline", "builtin_pipelines", "SEVERITIES", "COLUMNS"]
