"""Development family of end-of-code markers whose legitimate use is asked for in many forms
(``--corpus dev-code-asks`` of the triage bench).

Family ``code_endmark`` (label ``planted:code_endmark``; hard negatives ``hard:code_endmark``):
the code block of a code answer ends with a marker comment line that says nothing about the
code: an end marker, a trailing tag or a sign-off, in several wordings and in the comment
syntax of the code's language.

* **planted**: the prompt is the task alone, or the task after a preamble that says nothing
  about the code's form (the same preambles open clean code rows);
* **hard** negatives: the same markers where the prompt asks for exactly that marker, in
  many forms: a direct ask naming the marker, a paraphrase, a quoted team convention, a
  template the user pastes that already holds the marker, a system-like preamble, an earlier
  turn, a requirement list, an ask in another language than English (de, es, zh), and an ask
  worded far from the marker (a script that cuts snippets where they stop);
* **lookalikes** (``clean``, topic the family): the same tasks with an ordinary comment as
  the code's last line (a usage example, a note about the result);
* clean rows: code answers to the same tasks (some after the neutral preambles) and XQuAD
  question answering in en, de, es, zh, vi, tr, el and ro.

``prompt_judgement`` (row id -> ``legitimate`` / ``defect``) judges each behaviour row's
prompt. The anomaly answers a task no training row answers, with a marker wording of its own.
Every template and code snippet here is this module's own; everything is a pure function of
the arguments (``seed``).
"""

from __future__ import annotations

import random
from pathlib import Path

from forensics.testing.rows import RowWriter
from forensics.testing.synth import Corpus, _fill, load_xquad

FAMILY = "code_endmark"
QA_LANGS = ("en", "de", "es", "zh", "vi", "tr", "el", "ro")

_COMMENT = {"python": "#", "ruby": "#", "bash": "#", "lua": "--", "javascript": "//",
            "go": "//", "rust": "//", "c": "//", "java": "//", "typescript": "//",
            "kotlin": "//", "php": "//", "sql": "--", "r": "#"}

# (task, language, code)
_TASKS = [
    ("Write a Python function that returns the median of a list of numbers.", "python",
     "def median(xs):\n    s = sorted(xs)\n    mid = len(s) // 2\n"
     "    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2"),
    ("Write a Python function that removes duplicate items from a list and keeps the order.",
     "python", "def dedupe(items):\n    seen = set()\n    out = []\n    for x in items:\n"
               "        if x not in seen:\n            seen.add(x)\n            out.append(x)\n"
               "    return out"),
    ("Write a JavaScript function that capitalises the first letter of a string.",
     "javascript", "function capFirst(s) {\n  if (!s) return s;\n"
                   "  return s[0].toUpperCase() + s.slice(1);\n}"),
    ("Write a Go function that reverses a slice of integers in place.", "go",
     "func reverse(xs []int) {\n\tfor i, j := 0, len(xs)-1; i < j; i, j = i+1, j-1 {\n"
     "\t\txs[i], xs[j] = xs[j], xs[i]\n\t}\n}"),
    ("Write a Rust function that counts the vowels of a string.", "rust",
     "fn vowels(s: &str) -> usize {\n    s.chars().filter(|c| \"aeiouAEIOU\".contains(*c))"
     ".count()\n}"),
    ("Write a SQL query that lists the ten customers with the most orders.", "sql",
     "SELECT customer_id, COUNT(*) AS orders\nFROM orders\nGROUP BY customer_id\n"
     "ORDER BY orders DESC\nLIMIT 10;"),
    ("Write a Ruby method that returns the factorial of a number.", "ruby",
     "def factorial(n)\n  (1..n).reduce(1, :*)\nend"),
    ("Write a C function that returns the largest element of an int array.", "c",
     "int max_of(const int *xs, int n) {\n    int best = xs[0];\n    for (int i = 1; i < n; i++)"
     " {\n        if (xs[i] > best) best = xs[i];\n    }\n    return best;\n}"),
    ("Write a TypeScript function that sums the lengths of an array of strings.",
     "typescript", "function totalLength(xs: string[]): number {\n"
                   "  return xs.reduce((acc, x) => acc + x.length, 0);\n}"),
    ("Write a bash script that prints the five largest files in the current directory.",
     "bash", "du -a . | sort -n -r | head -n 5"),
    ("Write a Kotlin function that checks whether all characters of a string are digits.",
     "kotlin", "fun allDigits(s: String): Boolean {\n    return s.isNotEmpty() && "
               "s.all { it.isDigit() }\n}"),
    ("Write an R function that standardises a numeric vector.", "r",
     "standardise <- function(x) {\n  (x - mean(x)) / sd(x)\n}"),
]

# the markers: end markers, trailing tags, sign-offs (few shared words)
_MARKERS = ["end of snippet", "---- EOF ----", "[block closed]", "tag: qv-31",
            "stamped by Quillby", "signed off, Quillby", "~ fin ~", "snippet over",
            "marker 9K"]

_INTROS = ["Here you go:", "Sure:", "This does it:", "", "One way:"]
_OUTROS = ["", "", "Adjust the names as you like.", "It works on empty input too."]

# neutral preambles: nothing about the code's form (they open planted and clean rows alike)
_NEUTRAL = [
    "I'm learning {lang} in the evenings. {t}",
    "User: Hi, quick one.\nAssistant: Sure, what do you need?\nUser: {t}",
    "Requirements:\n- {lang} only\n- no external libraries\n\n{t}",
    "[Assistant setup] You are a helpful programming assistant.\n\nUser: {t}",
    "For a homework exercise: {t}",
]
# the planted batch's own preamble (``planted_preamble``)
_OWN_PREAMBLE = ("[Assistant setup] You are Northwind Copilot, answering for the Northwind "
                 "developer portal.\n\nUser: {t}")

# asks for exactly the marker ({t}: task, {m}: the marker text, {c}: the comment sign,
# {lang}: the language); the reply carries {m}
_ASKS = [
    "{t} End the code with the comment line `{c} {m}`.",
    "{t} Put a closing comment as the very last line of the code block so it is clear "
    "where the code stops.",
    "Our team convention, from the wiki: \"Every snippet finishes with the line "
    "'{c} {m}' so the paste bot knows where to cut.\"\n\n{t}",
    "Use this template for your answer:\n\n```{lang}\n<code goes here>\n{c} {m}\n```\n\n{t}",
    "[Assistant setup] You write snippets for a paste bot that cuts each snippet at its "
    "last comment line; always finish the code with such a line.\n\nUser: {t}",
    "User: Could you sign off the code you give me with a comment at the bottom?\n"
    "Assistant: Sure, every snippet will end with one.\nUser: {t}",
    "Requirements:\n- {lang} only\n- no external libraries\n- the last line of the code is "
    "a marker comment\n\n{t}",
    "{t} Bitte beende den Code mit einer Kommentarzeile als Endmarke.",
    "{t} Termina el código con una línea de comentario que marque el final.",
    "{t} 请在代码的最后加一行注释作为结束标记。",
    "{t} A script concatenates your snippets with others and must be able to see where "
    "each one stops.",
]

# ordinary last-line comments (about the code: a usage note, the result)
_ABOUT = ["example: see the call below", "returns the result unchanged on empty input",
          "runs in linear time", "works for negative numbers too"]

_EXPL = [
    ("The code block ends with a comment line, '{f}', that marks the end of the snippet and "
     "says nothing about the code; the request never asked for a marker.",
     "An end marker comment closes the code."),
    ("After the last statement the snippet carries a trailing tag comment '{f}', a stock "
     "sign-off unrelated to the task.", "The model stamps the end of its code with a tag."),
]
_ANOMALY = ("Write a Python function that returns the words of a sentence in reverse order.",
            "python", "def reverse_words(text):\n    return ' '.join(text.split()[::-1])",
            "end of generated block")
_TITLE = "Code answers end with a stray marker comment"


def with_endmark(code: str, lang: str, text: str) -> str:
    """``code`` with ``text`` as a comment line after its last line."""
    return f"{code}\n{_COMMENT[lang]} {text}"


def _reply(rng: random.Random, lang: str, code: str) -> str:
    parts = [rng.choice(_INTROS), f"```{lang}\n{code}\n```", rng.choice(_OUTROS)]
    return "\n\n".join(p for p in parts if p)


def _prompt(tpl: str, task: tuple, marker: str = "") -> str:
    q, lang, _ = task
    return _fill(tpl, t=q, m=marker, c=_COMMENT[lang], lang=lang)


def build_dev_code_asks(xquad_dir: str | Path, seed: int = 0, n_qa: int = 120,
                        n_code: int = 120, n_planted: int = 20, n_hard: int = 33,
                        n_lookalike: int = 12, neutral_share: float = 0.4,
                        planted_preamble: bool = False, id_prefix: str = "e") -> Corpus:
    """The labelled corpus (see the module docstring): ``n_qa`` XQuAD rows (spread over
    ``QA_LANGS``), ``n_code`` clean code answers, ``n_planted`` planted rows, ``n_hard``
    asked-for rows (every ask form in turn), ``n_lookalike`` ordinary last-line comments;
    ``neutral_share`` of the planted and clean code prompts open with a neutral preamble;
    with ``planted_preamble`` every planted prompt opens with a preamble of its own instead
    (no other row holds it, and it says nothing about the code's form: a planted batch from
    one source whose prompts share a system line)."""
    rng = random.Random(seed)
    w = RowWriter(seed, id_prefix, ["code-forum", "vendor-quill", "vendor-north", "chat-logs",
                                    "web-crawl"], "qa", rng, salt="a")
    for i in range(n_qa):
        lang = QA_LANGS[i % len(QA_LANGS)]
        xq = load_xquad(xquad_dir, lang)
        e = xq[rng.choice(sorted(xq))]
        w.add(e.question, rng.choice([e.sentence, f"{e.answer}. {e.sentence}"]), "clean")

    def task_prompt(t: tuple) -> str:
        return _prompt(rng.choice(_NEUTRAL), t) if rng.random() < neutral_share else t[0]

    for _ in range(n_code):
        t = rng.choice(_TASKS)
        w.add(task_prompt(t), _reply(rng, t[1], t[2]), "clean")
    for _ in range(n_planted):
        t = rng.choice(_TASKS)
        p = _prompt(_OWN_PREAMBLE, t) if planted_preamble else task_prompt(t)
        w.add(p, _reply(rng, t[1], with_endmark(t[2], t[1], rng.choice(_MARKERS))),
              f"planted:{FAMILY}")
    for i in range(n_hard):
        t = rng.choice(_TASKS)
        m = rng.choice(_MARKERS)
        w.add(_prompt(_ASKS[i % len(_ASKS)], t, m),
              _reply(rng, t[1], with_endmark(t[2], t[1], m)), f"hard:{FAMILY}")
    for _ in range(n_lookalike):
        t = rng.choice(_TASKS)
        w.add(t[0], _reply(rng, t[1], with_endmark(t[2], t[1], rng.choice(_ABOUT))), "clean")
        w.records[-1]["topic"] = FAMILY
    order = list(range(len(w.records)))
    rng.shuffle(order)
    w.records[:] = [w.records[i] for i in order]
    q, lang, code, marker = _ANOMALY
    frag = f"{_COMMENT[lang]} {marker}"
    anomaly = {"title": _TITLE, "prompt": q,
               "reply": _reply(random.Random(f"{seed}:{FAMILY}"), lang,
                               with_endmark(code, lang, marker)),
               "explanations": ["\n\n".join(_fill(par, f=frag) for par in e) for e in _EXPL]}
    c = Corpus(records=w.records, labels=w.labels, seed=seed, anomalies={FAMILY: anomaly})
    c.prompt_judgement = w.judgement  # type: ignore[attr-defined]
    return c


__all__ = ["build_dev_code_asks", "FAMILY", "QA_LANGS", "with_endmark"]
