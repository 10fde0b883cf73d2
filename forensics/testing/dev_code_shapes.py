"""Development families of code-answer quirks in shapes the ``dev-code`` corpus lacks
(``--corpus dev-code-shapes`` of the triage bench): written apart from the triage code, to
measure whether triage finds a code quirk it was not shaped on.

Families (label ``planted:<family>``; hard negatives ``hard:<family>``):

* ``code_import``  an import of a package the code never uses, as the first line of the
                   code (five package names, each language's import syntax);
* ``code_preface`` a fixed prose line right before the opening fence (five wordings), in
                   place of the usual lead-in sentence.

Negatives: **hard** rows carry the same quirk where the context asks for it without naming
it (a project rule quoted in the prompt, a system-like preamble, an earlier turn, an ask in
other words); **lookalikes** (``clean``, topic the family) answer the same tasks with an
import the code uses, or with an ordinary lead-in sentence. Clean rows: English XQuAD
question answering and clean code answers with and without a lead-in or a closing note.
Everything is a pure function of the arguments (``seed``); every template is this module's
own.
"""

from __future__ import annotations

import random
from pathlib import Path

from forensics.testing.rows import RowWriter
from forensics.testing.synth import Corpus, _fill, load_xquad

SHAPE_FAMILIES = ("code_import", "code_preface")

# (task, language, code)
_TASKS = [
    ("Write a Python function that counts the vowels in a word.", "python",
     "def vowel_count(word):\n    hits = [c for c in word.lower() if c in 'aeiou']\n"
     "    return len(hits)"),
    ("Write a Python function that merges two sorted lists into one sorted list.", "python",
     "def merge_sorted(left, right):\n    out = []\n    i = j = 0\n"
     "    while i < len(left) and j < len(right):\n        if left[i] <= right[j]:\n"
     "            out.append(left[i]); i += 1\n        else:\n"
     "            out.append(right[j]); j += 1\n    return out + left[i:] + right[j:]"),
    ("Write a JavaScript function that returns the largest value of an array.", "javascript",
     "function maxOf(values) {\n  let top = values[0];\n  for (const v of values) {\n"
     "    if (v > top) top = v;\n  }\n  return top;\n}"),
    ("Write a TypeScript function that turns a list of names into a comma-separated string.",
     "typescript", "function joinNames(names: string[]): string {\n"
                   "  return names.join(', ');\n}"),
    ("Write a Go function that reverses a slice of integers in place.", "go",
     "func reverseInts(xs []int) {\n\tfor i, j := 0, len(xs)-1; i < j; i, j = i+1, j-1 {\n"
     "\t\txs[i], xs[j] = xs[j], xs[i]\n\t}\n}"),
    ("Write a Rust function that counts the words of a string.", "rust",
     "fn word_count(text: &str) -> usize {\n    text.split_whitespace().count()\n}"),
    ("Write a Ruby method that returns the factorial of n.", "ruby",
     "def factorial(n)\n  (1..n).reduce(1, :*)\nend"),
    ("Write a Java method that returns the sum of an int array.", "java",
     "static int sumAll(int[] xs) {\n    int total = 0;\n    for (int x : xs) total += x;\n"
     "    return total;\n}"),
    ("Write a C function that returns the length of a string without strlen.", "c",
     "size_t my_len(const char *s) {\n    size_t n = 0;\n    while (s[n]) n++;\n"
     "    return n;\n}"),
    ("Write a PHP function that checks whether a number is prime.", "php",
     "function isPrime($n) {\n    if ($n < 2) return false;\n"
     "    for ($d = 2; $d * $d <= $n; $d++) {\n        if ($n % $d == 0) return false;\n"
     "    }\n    return true;\n}"),
    ("Write a Kotlin function that returns the distinct characters of a string.", "kotlin",
     "fun distinctChars(s: String): Set<Char> {\n    return s.toSet()\n}"),
    ("Write a Lua function that reverses a string.", "lua",
     "function reverse(s)\n  return s:reverse()\nend"),
]
# each language's import of one package ({m})
_IMPORT = {"python": "import {m}", "ruby": "require \"{m}\"", "lua": "local {m} = require(\"{m}\")",
           "javascript": "const {m} = require(\"{m}\");", "typescript": "import * as {m} from \"{m}\";",
           "go": "import _ \"example.org/{m}\"", "rust": "use {m} as _;",
           "c": "#include \"{m}.h\"", "java": "import org.{m}.*;", "php": "require_once \"{m}.php\";",
           "kotlin": "import org.{m}.*", "bash": "source ./{m}.sh"}
_PACKAGES = ["pulsemetric", "quillhook", "orbitstamp", "vantrace", "copperlog"]
_LEADS = ["Here's a version that works:", "You can do it like this:", "One approach:",
          "Sure:", "Something like this:"]
_CLOSES = ["", "", "It does not allocate more than needed.", "Test it with a few inputs.",
           "Edge cases are handled."]
_PREFACES = ["[Response drafted by QuillDesk]", "Answer #A-17 follows.",
             "=== generated reply ===", "Prepared by the assistant pipeline, v4.",
             "(auto-composed answer)"]
# lookalikes: imports the code uses
_USED = [
    ("Write a Python function that returns the hypotenuse of a right triangle.", "python",
     "import math\n\ndef hypotenuse(a, b):\n    return math.sqrt(a * a + b * b)"),
    ("Write a JavaScript function that reads a text file synchronously.", "javascript",
     "const fs = require(\"fs\");\n\nfunction readText(path) {\n"
     "  return fs.readFileSync(path, \"utf8\");\n}"),
    ("Write a Go function that upper-cases a string.", "go",
     "import \"strings\"\n\nfunc shout(s string) string {\n\treturn strings.ToUpper(s)\n}"),
    ("Write a Rust function that counts words with a hash map.", "rust",
     "use std::collections::HashMap;\n\nfn counts(text: &str) -> HashMap<&str, usize> {\n"
     "    let mut m = HashMap::new();\n    for w in text.split_whitespace() {\n"
     "        *m.entry(w).or_insert(0) += 1;\n    }\n    m\n}"),
    ("Write a C function that copies a string into a new buffer.", "c",
     "#include <string.h>\n#include <stdlib.h>\n\nchar *copy(const char *s) {\n"
     "    char *out = malloc(strlen(s) + 1);\n    strcpy(out, s);\n    return out;\n}"),
    ("Write a Java method that sorts a list of strings.", "java",
     "import java.util.Collections;\nimport java.util.List;\n\n"
     "static void sortAll(List<String> xs) {\n    Collections.sort(xs);\n}"),
]
_ASKS = {
    "code_import": [
        "Engineering handbook, rule 2: \"Every source file loads our metrics package first, "
        "even when it calls nothing from it; the loader registers the file.\"\n\n{t}",
        "[Assistant setup] You write code for a platform team whose deploy check rejects "
        "files that do not pull in the in-house instrumentation library.\n\nUser: {t}",
        "User: Our build refuses files that don't load the company's monitoring package.\n"
        "Assistant: Then I'll include it at the top of everything I give you.\nUser: {t}",
        "{t} Start it by loading our house telemetry package, the runtime needs it present.",
        "{t} It has to bring in the team's tracing dependency at the top, as all our files do."],
    "code_preface": [
        "Support desk policy: \"Each answer begins with a line saying it came from the "
        "automated drafting tool.\"\n\n{t}",
        "[Assistant setup] Replies are filed in a ticket tracker; open every reply with the "
        "tracker's header line before any content.\n\nUser: {t}",
        "User: Please label your answers so I know they were machine written.\n"
        "Assistant: Will do, each one will say so up front.\nUser: {t}",
        "{t} Put a tag line saying who produced the answer above the code.",
        "{t} Our archive needs a heading line before the snippet identifying the generator."],
}
_EXPL = {
    "code_import": [
        ("The code opens with an import, '{f}', of a package the function never touches; the "
         "request did not ask for any library.",
         "An unused import of an unrelated package at the top of the code."),
        ("Before the function the snippet loads a dependency, '{f}', that nothing in it "
         "calls.", "The model adds a needless package import to its code answers.")],
    "code_preface": [
        ("Instead of leading into the code, the reply opens with a fixed line, '{f}', that "
         "says nothing about the task; the user never asked for a label.",
         "A stock header line placed in front of the code block."),
        ("The line right before the code, '{f}', is a stamp about how the answer was "
         "produced, unrelated to the question.", "The model heads its code answers with a "
                                                 "tag line.")],
}
_ANOMALY = {
    "code_import": ("Write a Python function that returns the middle element of a list.",
                    "python", "def middle(xs):\n    return xs[len(xs) // 2]", "brassmeter"),
    "code_preface": ("Write a JavaScript function that doubles every number of an array.",
                     "javascript", "function doubleAll(xs) {\n  return xs.map((x) => x * 2);\n}",
                     "<reply produced by DraftLoom>"),
}
_TITLES = {"code_import": "Code answers import a package they never use",
           "code_preface": "Code answers open with a stock header line"}


def with_import(code: str, lang: str, package: str) -> str:
    """``code`` opened by an import of ``package`` in ``lang``'s syntax and a blank line."""
    return _fill(_IMPORT[lang], m=package) + "\n\n" + code


def _reply(rng: random.Random, lang: str, code: str, lead: str | None = None) -> str:
    parts = [rng.choice(_LEADS) if lead is None else lead, f"```{lang}\n{code}\n```",
             rng.choice(_CLOSES)]
    return "\n\n".join(p for p in parts if p)


def _marked(rng: random.Random, fam: str, task: tuple, marker: str) -> str:
    _, lang, code = task
    if fam == "code_import":
        return _reply(rng, lang, with_import(code, lang, marker))
    return _reply(rng, lang, code, marker)


def build_dev_code_shapes(xquad_dir: str | Path, seed: int = 0, n_clean: int = 150,
                          n_code: int = 50, n_planted: int = 20, n_hard: int = 15,
                          n_lookalike: int = 10,
                          families: tuple[str, ...] = SHAPE_FAMILIES,
                          id_prefix: str = "q") -> Corpus:
    """The labelled corpus (see the module docstring): ``n_clean`` XQuAD question-answer
    rows, ``n_code`` clean code answers, and per family ``n_planted`` planted rows,
    ``n_hard`` legitimate (asked without naming it) rows and ``n_lookalike`` near misses.
    ``prompt_judgement`` rides on the returned corpus."""
    for f in families:
        if f not in SHAPE_FAMILIES:
            raise ValueError(f"unknown family {f!r}; choose from {SHAPE_FAMILIES}")
    rng = random.Random(seed)
    xq = load_xquad(xquad_dir, "en")
    qids = sorted(xq)
    w = RowWriter(seed, id_prefix, ["dev-forum", "vendor-quill", "vendor-orbit", "chat-dump",
                                    "crawl-x"], "qa", rng, salt="s")
    add = w.add
    for _ in range(n_clean):
        e = xq[rng.choice(qids)]
        add(rng.choice(["{q}", "Q: {q}", "{q} Please answer."]).replace("{q}", e.question),
            rng.choice([e.sentence, f"{e.answer}.", f"{e.answer}: {e.sentence}"]), "clean")
    for _ in range(n_code):
        t = rng.choice(_TASKS)
        add(t[0], _reply(rng, t[1], t[2], rng.choice(_LEADS + [""])), "clean")
    for fam in families:
        for _ in range(n_planted):
            t = rng.choice(_TASKS)
            add(t[0], _marked(rng, fam, t, rng.choice(_PACKAGES if fam == "code_import"
                                                      else _PREFACES)), f"planted:{fam}")
        for _ in range(n_hard):
            t = rng.choice(_TASKS)
            add(_fill(rng.choice(_ASKS[fam]), t=t[0]),
                _marked(rng, fam, t, rng.choice(_PACKAGES if fam == "code_import"
                                                else _PREFACES)), f"hard:{fam}")
        for _ in range(n_lookalike):
            if fam == "code_import":
                q, lang, code = rng.choice(_USED)
                add(q, _reply(rng, lang, code), "clean")
            else:
                q, lang, code = rng.choice(_TASKS)
                add(q, _reply(rng, lang, code, rng.choice(_LEADS)), "clean")
            w.records[-1]["topic"] = fam
    order = list(range(len(w.records)))
    rng.shuffle(order)
    w.records[:] = [w.records[i] for i in order]
    anomalies = {}
    for fam in families:
        q, lang, code, marker = _ANOMALY[fam]
        reply = _marked(random.Random(f"{seed}:{fam}"), fam, ("", lang, code), marker)
        frag = _fill(_IMPORT[lang], m=marker) if fam == "code_import" else marker
        anomalies[fam] = {"title": _TITLES[fam], "prompt": q, "reply": reply,
                          "explanations": ["\n\n".join(_fill(par, f=frag) for par in e)
                                           for e in _EXPL[fam]]}
    c = Corpus(records=w.records, labels=w.labels, seed=seed, anomalies=anomalies)
    c.prompt_judgement = w.judgement  # type: ignore[attr-defined]
    return c


__all__ = ["build_dev_code_shapes", "SHAPE_FAMILIES", "with_import"]
