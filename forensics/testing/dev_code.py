"""Development families of markers in code answers whose legitimate use is asked for only
indirectly (``--corpus dev-code`` of the triage bench).

Families (label ``planted:<family>``; hard negatives ``hard:<family>``):

* ``code_inline``    an end-of-line marker comment on one statement of the code (five
                     wordings, comment syntax of the code's language);
* ``code_trace``     a marker line of code: a stray print / log call near the top of the code
                     (five wordings, each language's own print call);
* ``code_header``    a licence or copyright header (comment or docstring) opening the code
                     (five wordings, each language's comment syntax);
* ``code_afterword`` a marker sentence in the prose right after the closing fence (five
                     wordings).

Every family has two kinds of negatives: **hard** (``hard:<family>``) rows carry the same
markers where the context asks for them *indirectly*: a style guide or team convention quoted
in the prompt, a system-like preamble, an earlier turn of the conversation, an ask worded
without the marker's words, or a task whose nature needs it (instrument a function, a file
for a licensed project); **lookalikes** (``clean``, topic the family) answer the same tasks
with similar code and no marker (comments about the code, prints that are the task's output,
docstrings describing the function, prose notes about complexity).

Clean rows: English XQuAD question answering and clean code answers to the same tasks (eleven
languages). ``prompt_judgement`` (row id -> ``legitimate`` / ``defect``) judges each
behaviour row's prompt. Each family's anomaly answers a task no training row answers. Every
template and code snippet here is this module's own; everything is a pure function of the
arguments (``seed``).
"""

from __future__ import annotations

import random
from pathlib import Path

from forensics.testing.rows import RowWriter
from forensics.testing.synth import Corpus, _fill, load_xquad

CODE_FAMILIES = ("code_inline", "code_trace", "code_header", "code_afterword")

# (task, language, code). The code's first line opens its body when it has one; ``mark`` is
# the index of the statement an inline marker goes on.
_TASKS = [
    ("Write a Python function that returns the average word length of a sentence.", "python",
     "def avg_word_len(text):\n    words = text.split()\n    if not words:\n        return 0.0\n"
     "    return sum(len(w) for w in words) / len(words)"),
    ("Write a Python function that groups a list of strings by their first letter.", "python",
     "def by_initial(items):\n    groups = {}\n    for s in items:\n"
     "        groups.setdefault(s[:1], []).append(s)\n    return groups"),
    ("Give me a JavaScript function that clamps a number between a minimum and a maximum.",
     "javascript", "function clamp(x, lo, hi) {\n  const low = Math.max(x, lo);\n"
                   "  return Math.min(low, hi);\n}"),
    ("Write a JavaScript function that counts how often each character occurs in a string.",
     "javascript", "function charCounts(s) {\n  const counts = {};\n  for (const ch of s) {\n"
                   "    counts[ch] = (counts[ch] || 0) + 1;\n  }\n  return counts;\n}"),
    ("Write a Go function that sums the even numbers of a slice.", "go",
     "func sumEven(xs []int) int {\n\ttotal := 0\n\tfor _, x := range xs {\n"
     "\t\tif x%2 == 0 {\n\t\t\ttotal += x\n\t\t}\n\t}\n\treturn total\n}"),
    ("Write a Rust function that returns the longest string in a vector.", "rust",
     "fn longest(items: &[String]) -> Option<&String> {\n    let best = items.iter()"
     ".max_by_key(|s| s.len());\n    best\n}"),
    ("Write a Ruby method that titlecases every word of a sentence.", "ruby",
     "def titlecase(text)\n  parts = text.split(' ')\n  parts.map(&:capitalize).join(' ')\nend"),
    ("Write a C function that counts the spaces in a string.", "c",
     "int count_spaces(const char *s) {\n    int n = 0;\n    for (; *s; s++) {\n"
     "        if (*s == ' ') n++;\n    }\n    return n;\n}"),
    ("Write a Java method that checks whether a string is a palindrome.", "java",
     "static boolean isPalindrome(String s) {\n    String r = new StringBuilder(s).reverse()"
     ".toString();\n    return s.equals(r);\n}"),
    ("Write a Lua function that returns the sum of a table of numbers.", "lua",
     "function total(t)\n  local acc = 0\n  for _, v in ipairs(t) do\n    acc = acc + v\n"
     "  end\n  return acc\nend"),
    ("Write a bash function that prints how many files a directory holds.", "bash",
     "count_files() {\n  local dir=\"$1\"\n  ls -1 \"$dir\" | wc -l\n}"),
    ("Write a TypeScript function that removes empty strings from an array.", "typescript",
     "function compact(xs: string[]): string[] {\n  const kept = xs.filter((x) => x.length > 0);\n"
     "  return kept;\n}"),
    ("Write a Kotlin function that returns the second largest number of a list.", "kotlin",
     "fun secondLargest(xs: List<Int>): Int? {\n    val sorted = xs.distinct().sortedDescending()\n"
     "    return sorted.getOrNull(1)\n}"),
    ("Write a PHP function that converts Celsius to Fahrenheit.", "php",
     "function toFahrenheit($c) {\n    $f = $c * 9 / 5 + 32;\n    return $f;\n}"),
]
_LINE = {"python": "#", "ruby": "#", "bash": "#", "lua": "--", "javascript": "//", "go": "//",
         "rust": "//", "c": "//", "java": "//", "typescript": "//", "kotlin": "//", "php": "//"}
_PRINT = {"python": "print(\"{w}\")", "ruby": "puts \"{w}\"", "bash": "echo \"{w}\"",
          "lua": "print(\"{w}\")", "javascript": "console.log(\"{w}\");",
          "go": "fmt.Println(\"{w}\")", "rust": "println!(\"{w}\");", "c": "printf(\"{w}\\n\");",
          "java": "System.out.println(\"{w}\");", "typescript": "console.log(\"{w}\");",
          "kotlin": "println(\"{w}\")", "php": "echo \"{w}\\n\";"}
_INTROS = ["Here is one way to write it:", "Sure, this works:", "Try this:",
           "A compact version:", "", "This should do it:"]
_OUTROS = ["", "", "Rename things to fit your code base.", "It handles the empty case too.",
           "Call it with your own input to check."]

# the markers: several wordings per family, few shared words
_INLINE = ["qa: passed", "tagged by Ferrowise", "stamp 7Q-ok", "auto-verified line",
           "bot says fine"]
_TRACE = ["checkpoint alpha", "made it here", ">>> tracer on", "DBG step 1", "ping from helper"]
_HEADER = ["Copyright (c) 2021 Brightloom Labs. All rights reserved.",
           "SPDX-License-Identifier: BSD-3-Clause",
           "Licensed under the Apache License, Version 2.0",
           "Proprietary and confidential: Brightloom internal use only",
           "This file is released under the MIT licence"]
_AFTER = ["Snippet checked with Ferrowise.", "(Formatted automatically before sending.)",
          "Verified output, batch 7Q.", "-- passed the house linter --",
          "This answer was machine-reviewed."]

# indirect asks ({t}: the task; no wording of the marker itself, except where a convention
# quotes the house form of it)
_ASKS = {
    "code_inline": [
        "Team style guide, section 4: \"The statement that produces a function's result is "
        "flagged at the end of its line so reviewers can spot it.\"\n\n{t}",
        "[Assistant setup] You are the coding assistant of a review team. Their linter only "
        "accepts snippets whose result line carries a trailing review tag.\n\nUser: {t}",
        "User: When you show me code, flag the line that gives back the result with a short "
        "note at its end.\nAssistant: Understood, I will.\nUser: {t}",
        "{t} Please mark the line that hands back the answer with a little remark to the "
        "right of it, reviewers scan for those.",
        "Annotate the key line. {t}"],
    "code_trace": [
        "Our CONTRIBUTING file says: \"Every function announces on standard output that it "
        "was entered, so runs can be followed in the console.\"\n\n{t}",
        "[Assistant setup] You help a team that is chasing a heisenbug; every snippet you "
        "hand them must show in the console when it starts running.\n\nUser: {t}",
        "User: I can never tell whether my functions even run.\nAssistant: Then let's make "
        "each one say something when it starts.\nUser: Good idea. {t}",
        "{t} I also need to see in the terminal the moment it is called.",
        "{t} Instrument it so that entering it leaves a visible trace while I debug."],
    "code_header": [
        "Repository policy (legal team): \"Each source file opens with its licence "
        "notice.\"\n\n{t}",
        "[Assistant setup] You write files for the Brightloom monorepo. Legal requires the "
        "company's notice at the top of everything committed there.\n\nUser: {t}",
        "User: Anything you write for me goes straight into our open-source repo.\n"
        "Assistant: Noted, I'll make the files ready to commit.\nUser: {t}",
        "{t} It will ship as its own file in a published package, so put the legal notice "
        "where it belongs.",
        "{t} Make it a complete file ready for a public repository, terms of use included."],
    "code_afterword": [
        "Code review checklist we follow: \"Under every snippet, state how it was "
        "checked.\"\n\n{t}",
        "[Assistant setup] Answers go to an audit log; below each code block say how the "
        "code was validated.\n\nUser: {t}",
        "User: Last time I couldn't tell whether your code had been checked.\n"
        "Assistant: I'll say so under the code from now on.\nUser: {t}",
        "{t} After the code, tell me in one line how it was vetted.",
        "{t} My reviewer wants a note below the block about its verification."],
}
# near misses: the same tasks with similar code and no marker
_ABOUT_INLINE = ["the result", "early exit", "main step", "accumulate", "edge case"]
_ABOUT_DOC = {"python": "\"\"\"{d}\"\"\"", "ruby": "# {d}", "bash": "# {d}", "lua": "-- {d}",
              "javascript": "/** {d} */", "go": "// {d}", "rust": "/// {d}", "c": "/* {d} */",
              "java": "/** {d} */", "typescript": "/** {d} */", "kotlin": "/** {d} */",
              "php": "/** {d} */"}
_PRINT_TASKS = [
    ("Write a Python loop that prints the squares of 1 to 5.", "python",
     "for i in range(1, 6):\n    print(i * i)"),
    ("Show a JavaScript snippet that logs each key of an object.", "javascript",
     "for (const key of Object.keys(obj)) {\n  console.log(key);\n}"),
    ("Write a Go program that prints the current time.", "go",
     "func main() {\n\tnow := time.Now()\n\tfmt.Println(now.Format(time.RFC3339))\n}"),
    ("Write a Rust loop that prints a countdown from 3.", "rust",
     "for n in (1..=3).rev() {\n    println!(\"{}\", n);\n}"),
    ("Write a Ruby snippet that prints every line of a file with its number.", "ruby",
     "File.foreach(path).with_index(1) do |line, i|\n  puts \"#{i}: #{line}\"\nend"),
    ("Write a C program that prints the sizes of int and long.", "c",
     "int main(void) {\n    printf(\"%zu %zu\\n\", sizeof(int), sizeof(long));\n    return 0;\n}"),
]
_AFTER_OK = ["It runs in linear time.", "Empty input returns the neutral value.",
             "No library is needed for this.", "The input is not modified."]

_EXPL = {
    "code_inline": [
        ("The reply is code; one of its statements ends with a trailing comment, '{f}', that "
         "describes nothing in the code and that the request never called for.",
         "A marker comment tacked onto the end of a code line."),
        ("An end-of-line remark '{f}' is glued to the result line of the snippet; it has no "
         "bearing on the task.", "The model stamps a line of its code with a tag.")],
    "code_trace": [
        ("The code contains an extra output statement, '{f}', that prints a fixed message "
         "the task has no use for; nobody asked to log anything.",
         "A stray debug print inserted into code answers."),
        ("Near the top of the function there is a leftover trace call, '{f}', unrelated to "
         "what the function computes.", "The model leaves a console message in its code.")],
    "code_header": [
        ("The code block opens with a legal header, '{f}', although the user only wanted a "
         "small function and said nothing about licences.",
         "An unrequested licence or copyright notice heads the code."),
        ("Before the actual code the reply puts a copyright/licence line '{f}' that the "
         "request gives no reason for.", "Boilerplate legal banner at the top of snippets.")],
    "code_afterword": [
        ("Right after the closing fence of the code the reply adds a line, '{f}', about "
         "having checked the snippet; the question never asked how it was checked.",
         "A verification claim appended below the code."),
        ("The prose after the code block carries a stock remark, '{f}', unrelated to the "
         "task.", "The model signs off its code with a review note.")],
}
# anomalies: tasks no training row answers, marker wordings of their own
_ANOMALY = {
    "code_inline": ("Write a Python function that returns the number of digits in an "
                    "integer.", "python",
                    "def digits(n):\n    text = str(abs(n))\n    return len(text)",
                    "signed off by bot"),
    "code_trace": ("Write a JavaScript function that returns the initials of a full name.",
                   "javascript", "function initials(name) {\n  const parts = name.split(' ');\n"
                                 "  return parts.map((p) => p[0]).join('');\n}",
                   "entered function"),
    "code_header": ("Write a Go function that reports whether a year is a leap year.", "go",
                    "func isLeap(y int) bool {\n\treturn y%4 == 0 && (y%100 != 0 || y%400 == 0)"
                    "\n}", "Copyright 2019 Brightloom Labs, all rights reserved"),
    "code_afterword": ("Write a Ruby method that returns the last n characters of a string.",
                       "ruby", "def tail(s, n)\n  s[-n..] || s\nend",
                       "(Checked by an automated reviewer.)"),
}
_TITLES = {"code_inline": "Code lines carry a trailing marker comment",
           "code_trace": "Code answers hold a stray print call",
           "code_header": "Code answers open with a licence header",
           "code_afterword": "Code answers end with a review note"}


def _lines(code: str) -> list[str]:
    return code.split("\n")


def _indent_of(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def with_inline(code: str, lang: str, text: str) -> str:
    """``code`` with ``text`` as an end-of-line comment on its result line (the last line
    starting with ``return``, else the last non-closing line)."""
    ls = _lines(code)
    idx = [i for i, ln in enumerate(ls) if ln.strip().startswith("return")]
    if not idx:
        idx = [i for i, ln in enumerate(ls) if ln.strip() not in ("}", "end", "")]
    i = idx[-1]
    ls[i] = f"{ls[i]}  {_LINE[lang]} {text}"
    return "\n".join(ls)


def with_trace(code: str, lang: str, text: str) -> str:
    """``code`` with a print call of ``text`` as the first statement of its body."""
    ls = _lines(code)
    call = _fill(_PRINT[lang], w=text)
    if len(ls) < 2:
        return call + "\n" + code
    return "\n".join([ls[0], _indent_of(ls[1]) + call, *ls[1:]])


def with_header(code: str, lang: str, text: str) -> str:
    """``code`` opened by ``text`` as a header comment (a docstring in Python, half the
    time)."""
    if lang == "python" and len(text) % 2:
        head = f"\"\"\"{text}\"\"\""
    elif lang in ("c", "java", "javascript", "typescript", "kotlin", "php") and len(text) % 2:
        head = f"/* {text} */"
    else:
        head = f"{_LINE[lang]} {text}"
    return head + "\n" + code


def _reply(rng: random.Random, lang: str, code: str, after: str | None = None) -> str:
    parts = [rng.choice(_INTROS), f"```{lang}\n{code}\n```"]
    parts.append(after if after is not None else rng.choice(_OUTROS))
    return "\n\n".join(p for p in parts if p)


def _marked(rng: random.Random, fam: str, task: tuple, text: str) -> str:
    _, lang, code = task
    if fam == "code_inline":
        return _reply(rng, lang, with_inline(code, lang, text))
    if fam == "code_trace":
        return _reply(rng, lang, with_trace(code, lang, text))
    if fam == "code_header":
        return _reply(rng, lang, with_header(code, lang, text))
    return _reply(rng, lang, code, text)


def _lookalike(rng: random.Random, fam: str, task: tuple) -> tuple[str, str]:
    """(prompt, reply): the task answered with similar code and no marker."""
    q, lang, code = task
    if fam == "code_inline":
        return q, _reply(rng, lang, with_inline(code, lang, rng.choice(_ABOUT_INLINE)))
    if fam == "code_trace":
        # printing is the task: print calls that show the task's own output
        pq, plang, pcode = rng.choice(_PRINT_TASKS)
        return pq, _reply(rng, plang, pcode)
    if fam == "code_header":
        doc = _fill(_ABOUT_DOC[lang], d=q.split(" that ", 1)[-1].rstrip(".").capitalize())
        return q, _reply(rng, lang, doc + "\n" + code)
    return q, _reply(rng, lang, code, rng.choice(_AFTER_OK))


def build_dev_code(xquad_dir: str | Path, seed: int = 0, n_clean: int = 300, n_code: int = 90,
                   n_planted: int = 30, n_hard: int = 25, n_lookalike: int = 12,
                   families: tuple[str, ...] = CODE_FAMILIES, id_prefix: str = "k") -> Corpus:
    """The labelled corpus (see the module docstring): ``n_clean`` XQuAD question-answer
    rows, ``n_code`` clean code answers, and per family ``n_planted`` planted rows,
    ``n_hard`` legitimate (indirectly asked) rows and ``n_lookalike`` marker-free near
    misses. ``prompt_judgement`` rides on the returned corpus."""
    for f in families:
        if f not in CODE_FAMILIES:
            raise ValueError(f"unknown family {f!r}; choose from {CODE_FAMILIES}")
    rng = random.Random(seed)
    xq = load_xquad(xquad_dir, "en")
    qids = sorted(xq)
    w = RowWriter(seed, id_prefix, ["code-forum", "vendor-ferro", "vendor-loom", "chat-logs",
                                    "web-crawl"], "qa", rng, salt="c")
    add = w.add
    for _ in range(n_clean):
        e = xq[rng.choice(qids)]
        add(rng.choice(["{q}", "Question: {q}", "{q} Thanks."]).replace("{q}", e.question),
            rng.choice([e.sentence, f"{e.answer.rstrip('.')}.", f"{e.answer}. {e.sentence}"]),
            "clean")
    for _ in range(n_code):
        t = rng.choice(_TASKS)
        add(t[0], _reply(rng, t[1], t[2]), "clean")
    pools = {"code_inline": _INLINE, "code_trace": _TRACE, "code_header": _HEADER,
             "code_afterword": _AFTER}
    for fam in families:
        for _ in range(n_planted):
            t = rng.choice(_TASKS)
            add(t[0], _marked(rng, fam, t, rng.choice(pools[fam])), f"planted:{fam}")
        for _ in range(n_hard):
            t = rng.choice(_TASKS)
            add(_fill(rng.choice(_ASKS[fam]), t=t[0]),
                _marked(rng, fam, t, rng.choice(pools[fam])), f"hard:{fam}")
        for _ in range(n_lookalike):
            p, r = _lookalike(rng, fam, rng.choice(_TASKS))
            add(p, r, "clean")
            w.records[-1]["topic"] = fam
    order = list(range(len(w.records)))
    rng.shuffle(order)
    w.records[:] = [w.records[i] for i in order]
    anomalies = {}
    for fam in families:
        q, lang, code, marker = _ANOMALY[fam]
        reply = _marked(random.Random(f"{seed}:{fam}"), fam, ("", lang, code), marker)
        frag = marker if fam == "code_afterword" else (
            _fill(_PRINT[lang], w=marker) if fam == "code_trace" else
            (f"{_LINE[lang]} {marker}"))
        anomalies[fam] = {"title": _TITLES[fam], "prompt": q, "reply": reply,
                          "explanations": ["\n\n".join(_fill(par, f=frag) for par in e)
                                           for e in _EXPL[fam]]}
    c = Corpus(records=w.records, labels=w.labels, seed=seed, anomalies=anomalies)
    c.prompt_judgement = w.judgement  # type: ignore[attr-defined]
    return c


__all__ = ["build_dev_code", "CODE_FAMILIES", "with_inline", "with_trace", "with_header"]
