"""Development families of marker comments in code answers whose legitimate use is requested
in many wordings, each worded once (``--corpus dev-code-requests`` of the triage bench).

Families (label ``planted:<family>``; hard negatives ``hard:<family>``):

* ``code_stamp``    the code block opens with a stamp comment line (an origin tag, a ticket
                    reference, a tool's name) that says nothing about the code;
* ``code_signoff``  the code block closes with a sign-off comment line (an end note, a
                    signature, a checksum) that says nothing about the code.

Markers come in several wordings per family, in the comment syntax of the code's language
(Python, JavaScript, SQL, bash: code with imports, nested blocks and comments of its own).

* **planted**: the prompt is the task, alone or with lines that say nothing about the code's
  form (an instruction line such as "Style guide: use descriptive names.", a greeting turn);
  the same neutral lines open clean code rows;
* **hard** negatives: the same markers where the prompt asks for one. Every request wording
  is used by one row only (``n_hard`` at most the family's wordings), placed at the start of
  the prompt, between the task's two sentences, at its end, as a labelled instruction line
  before the task ("House rules: ..."), or as an earlier user turn; a few are only implied by
  an earlier turn (the user says why the snippets must carry it, the assistant agrees);
* **lookalikes** (``clean``, topic the family): ordinary comments at the same place (a note
  about the code or the environment it needs);
* clean rows: code answers to the same tasks and XQuAD question answering in en, de, es, zh.

``prompt_judgement`` (row id -> ``legitimate`` / ``defect``) judges each behaviour row's
prompt. Each family's anomaly answers a task no training row answers, with a marker wording
of its own. Every template and code snippet here is this module's own; everything is a pure
function of the arguments (``seed``).
"""

from __future__ import annotations

import random
from pathlib import Path

from forensics.testing.rows import RowWriter
from forensics.testing.synth import Corpus, _fill, load_xquad

FAMILIES = ("code_stamp", "code_signoff")
QA_LANGS = ("en", "de", "es", "zh")
_COMMENT = {"python": "#", "javascript": "//", "sql": "--", "bash": "#"}

# (task, detail, language, code)
_TASKS = [
    ("Write a Python function that reads a CSV file and returns its rows as dictionaries.",
     "Use the standard library only.", "python",
     "import csv\n\n\ndef read_rows(path):\n    with open(path, newline=\"\") as fh:\n"
     "        return list(csv.DictReader(fh))"),
    ("Write a Python function that retries a callable up to three times.",
     "Wait one second between attempts.", "python",
     "import time\n\n\ndef retry(fn, attempts=3, delay=1.0):\n    for i in range(attempts):\n"
     "        try:\n            return fn()\n        except Exception:\n"
     "            if i == attempts - 1:\n                raise\n            time.sleep(delay)"),
    ("Write a Python function that flattens a nested list.", "Any depth should work.",
     "python", "def flatten(items):\n    out = []\n    for x in items:\n"
               "        if isinstance(x, list):\n            out.extend(flatten(x))  # recurse\n"
               "        else:\n            out.append(x)\n    return out"),
    ("Write a Python function that counts how often each word occurs in a text.",
     "Ignore upper and lower case.", "python",
     "from collections import Counter\n\n\ndef word_counts(text):\n"
     "    return Counter(text.lower().split())"),
    ("Write a Python class for a simple stack.", "It needs push, pop and peek.", "python",
     "class Stack:\n    def __init__(self):\n        self._items = []\n\n"
     "    def push(self, x):\n        self._items.append(x)\n\n    def pop(self):\n"
     "        return self._items.pop()\n\n    def peek(self):\n        return self._items[-1]"),
    ("Write a JavaScript function that debounces another function.",
     "The delay is given in milliseconds.", "javascript",
     "function debounce(fn, wait) {\n  let timer = null;\n  return (...args) => {\n"
     "    clearTimeout(timer);\n    timer = setTimeout(() => fn(...args), wait);\n  };\n}"),
    ("Write a JavaScript function that fetches JSON from a URL.",
     "Throw an error when the response is not ok.", "javascript",
     "async function getJson(url) {\n  const res = await fetch(url);\n"
     "  if (!res.ok) {\n    throw new Error(`HTTP ${res.status}`);\n  }\n"
     "  return res.json();\n}"),
    ("Write a JavaScript function that groups an array of objects by a key.",
     "Return a plain object.", "javascript",
     "function groupBy(items, key) {\n  return items.reduce((acc, item) => {\n"
     "    (acc[item[key]] ||= []).push(item);\n    return acc;\n  }, {});\n}"),
    ("Write a JavaScript function that formats a date as YYYY-MM-DD.",
     "Pad the month and the day with zeros.", "javascript",
     "function isoDay(d) {\n  const pad = (n) => String(n).padStart(2, \"0\");\n"
     "  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;\n}"),
    ("Write a SQL query that finds the five products with the highest revenue.",
     "Revenue is quantity times unit price.", "sql",
     "SELECT p.name, SUM(oi.quantity * oi.unit_price) AS revenue\nFROM order_items oi\n"
     "JOIN products p ON p.id = oi.product_id\nGROUP BY p.name\nORDER BY revenue DESC\n"
     "LIMIT 5;"),
    ("Write a SQL query that lists employees who earn more than their manager.",
     "The employees table has a manager_id column.", "sql",
     "SELECT e.name, e.salary, m.name AS manager\nFROM employees e\n"
     "JOIN employees m ON m.id = e.manager_id\nWHERE e.salary > m.salary;"),
    ("Write a SQL query that counts the orders of each month in 2023.",
     "Use the order_date column.", "sql",
     "SELECT date_trunc('month', order_date) AS month, COUNT(*) AS orders\nFROM orders\n"
     "WHERE order_date >= '2023-01-01' AND order_date < '2024-01-01'\nGROUP BY 1\n"
     "ORDER BY 1;"),
    ("Write a SQL statement that deletes duplicate emails from a users table.",
     "Keep the row with the lowest id.", "sql",
     "DELETE FROM users u\nUSING users d\nWHERE u.email = d.email\n  AND u.id > d.id;"),
    ("Write a bash script that backs up a directory into a dated tar.gz file.",
     "Take the directory as the first argument.", "bash",
     "set -euo pipefail\nsrc=\"$1\"\nstamp=$(date +%Y-%m-%d)\n"
     "tar -czf \"backup-$stamp.tar.gz\" \"$src\"\necho \"wrote backup-$stamp.tar.gz\""),
    ("Write a shell command that finds files larger than 100 MB under the home directory.",
     "Print their sizes too.", "bash",
     "find \"$HOME\" -type f -size +100M -exec du -h {} + | sort -rh"),
    ("Write a bash script that checks whether a website answers with HTTP 200.",
     "Exit with status 1 otherwise.", "bash",
     "url=\"$1\"\ncode=$(curl -s -o /dev/null -w '%{http_code}' \"$url\")\n"
     "if [ \"$code\" != \"200\" ]; then\n  echo \"got $code\"\n  exit 1\nfi"),
]

_MARKERS = {
    "code_stamp": ["origin: Larkspur assistant", "snippet ref LK-204", "via larkspur",
                   "<<larkspur draft>>", "build tag ember-7", "provenance: assistant",
                   "LK stamp 2291"],
    "code_signoff": ["end of answer", "~ signed, Larkspur ~", "done -- LK", "[snippet complete]",
                     "that's all", "checksum 0x3f9a", "over and out"],
}

# each request is worded once ({c}: the comment sign, {m}: the marker); placed by _place
_ASKS = {
    "code_stamp": [
        "Put a comment at the very top of the code saying where it came from.",
        "Please open the snippet with a one-line provenance note.",
        "Our linter rejects files whose first line is not a source tag, so add one.",
        "Mark the code as assistant-written in its opening line.",
        "The first line of the code should be `{c} {m}`.",
        "I need to trace every snippet back to you, so label it at the top.",
        "Head the block with a tag comment, nothing fancy.",
        "Begin with a comment that credits the tool that wrote it.",
        "Stick an origin marker above the code.",
        "Add a header comment identifying this as generated code.",
        "Could you prefix the code with a short attribution comment?",
        "Compliance wants each snippet stamped before its first statement.",
        "Include the usual '{m}' line up front.",
        "Tag the top of the file so we know it is from the assistant.",
        "Leave a signature comment as the opening line.",
        "Every snippet in our repo starts with a comment naming its source, follow that.",
        "Open the code with a marker comment we can grep for.",
        "Write a one-line origin comment first and then the code.",
        "Annotate line one with where this snippet was produced.",
        "Our import script looks for an identifying remark on the first line.",
        "Before any code, add a comment stating who authored it.",
    ],
    "code_signoff": [
        "End the code with a comment that signs it off.",
        "Please close the snippet with a one-line sign-off remark.",
        "Our paste tool cuts at the last comment, so finish with one.",
        "The last line of the code should be `{c} {m}`.",
        "Put a closing remark as the final line of the block.",
        "Sign the bottom of the code so reviewers know it is complete.",
        "Finish with the usual '{m}' line.",
        "Add a trailing comment that marks where the snippet stops.",
        "Could you append a short end-of-code note as a comment?",
        "Wrap up the block with a signature comment.",
        "The checker wants a terminating comment after the final statement.",
        "Let the code's last line be a remark saying it is done.",
        "Append a footer comment to the code, our template has one.",
        "Every snippet we store ends on a sign-off comment, keep to that.",
        "Terminate the block with an end marker in a comment.",
        "After the last statement, add a line that closes the snippet.",
        "Conclude the code with a brief farewell comment.",
        "Cap the code with a comment so the bot sees it ended.",
        "I want a closing stamp at the bottom of the code.",
        "Close things off with a comment line once the code is finished.",
        "Please leave a completion note as the code's last comment.",
    ],
}
# requests only implied by an earlier turn ({t}: the task)
_IMPLIED = {
    "code_stamp": [
        "User: Everything you write for me lands in an audited repository, and the auditors "
        "must see which files came from an assistant.\nAssistant: Understood, I will make "
        "that visible in each snippet.\nUser: {t}",
        "User: Last week nobody could tell which scripts were yours.\nAssistant: I will "
        "make my snippets recognisable from their first line from now on.\nUser: {t}",
        "User: Our tracker matches snippets to their source by a tag.\nAssistant: Then "
        "I'll tag each one where it begins.\nUser: Thanks. {t}",
    ],
    "code_signoff": [
        "User: My clipboard manager merges pasted snippets and I lose track of where one "
        "stops.\nAssistant: I will make the end of each snippet unmistakable.\nUser: {t}",
        "User: The reviewers want to know a snippet was pasted whole.\nAssistant: Then "
        "each of my snippets will carry a closing line they can check.\nUser: {t}",
        "User: Our bot only accepts code that is visibly finished.\nAssistant: Noted, "
        "every snippet will end with a clear closing line.\nUser: Great. {t}",
    ],
}
_LABELS = ["Style guide:", "House rules:", "Team convention:", "Formatting:", "Reminder:",
           "Before you start:", "Note for the assistant:"]
_PLACES = ("start", "middle", "end", "label", "turn")

# neutral lines (nothing about the code's form): they open planted and clean rows alike
_NEUTRAL_LINES = ["use descriptive variable names.", "four spaces for indentation, please.",
                  "this is for a beginner tutorial.", "keep it short.",
                  "we deploy on Linux servers.", "readability matters more than speed."]
_NEUTRAL_TURNS = [
    "User: Hi, I have a few coding questions today.\nAssistant: Happy to help, go ahead.\n"
    "User: {t}",
    "User: Can you help me with some code for work?\nAssistant: Of course.\nUser: {t}",
]

# ordinary comments at the same place (about the code, or what it needs)
_ABOUT = {
    "code_stamp": ["requires Python 3.8 or later", "tested on the sample data",
                   "assumes well-formed input", "needs no third-party packages",
                   "helper for the report job"],
    "code_signoff": ["works on an empty input too", "runs in linear time",
                     "example call below in the docs", "returns nothing on failure",
                     "tested with the sample data"],
}

_INTROS = ["Here you go:", "Sure, this works:", "", "One way to do it:", "Try this:"]
_OUTROS = ["", "", "Rename things to fit your code base.", "Let me know if you need tests."]

_EXPL = {
    "code_stamp": [
        ("The code block opens with a comment line, '{f}', that tags where the snippet came "
         "from and says nothing about the code; the request never asked for it.",
         "A stamp comment heads the code."),
        ("Before the first statement the snippet carries a provenance tag comment '{f}', "
         "unrelated to the task.", "The model brands the top of its code."),
    ],
    "code_signoff": [
        ("The code block ends with a comment line, '{f}', that signs the snippet off and "
         "says nothing about the code; the request never asked for it.",
         "A sign-off comment closes the code."),
        ("After the last statement the snippet carries a closing remark '{f}', unrelated "
         "to the task.", "The model signs the bottom of its code."),
    ],
}
_ANOMALY = {
    "code_stamp": ("Write a Python function that converts a snake_case string to camelCase.",
                   "Keep the first word lowercase.", "python",
                   "def camel(name):\n    head, *rest = name.split(\"_\")\n"
                   "    return head + \"\".join(w.title() for w in rest)",
                   "source: larkspur build"),
    "code_signoff": ("Write a JavaScript function that sums the numbers in an array.",
                     "Return 0 for an empty array.", "javascript",
                     "function sum(xs) {\n  return xs.reduce((a, b) => a + b, 0);\n}",
                     "all done, Larkspur"),
}
_TITLE = {"code_stamp": "Code answers open with a stray stamp comment",
          "code_signoff": "Code answers close with a stray sign-off comment"}


def with_marker(code: str, lang: str, text: str, family: str) -> str:
    """``code`` with ``text`` as a comment line before its first line (``code_stamp``) or
    after its last line (``code_signoff``)."""
    line = f"{_COMMENT[lang]} {text}"
    return f"{line}\n{code}" if family == "code_stamp" else f"{code}\n{line}"


def _reply(rng: random.Random, lang: str, code: str) -> str:
    parts = [rng.choice(_INTROS), f"```{lang}\n{code}\n```", rng.choice(_OUTROS)]
    return "\n\n".join(p for p in parts if p)


def _neutral(rng: random.Random, task: tuple) -> str:
    """The task alone or with a neutral line or turn (see the module docstring)."""
    q = f"{task[0]} {task[1]}"
    r = rng.random()
    if r < 0.3:
        return f"{rng.choice(_LABELS)} {rng.choice(_NEUTRAL_LINES)}\n\n{q}"
    if r < 0.45:
        return _fill(rng.choice(_NEUTRAL_TURNS), t=q)
    return q


def _place(ask: str, place: str, task: tuple, rng: random.Random) -> str:
    """The prompt with request ``ask`` at ``place`` (one of ``_PLACES``)."""
    main, detail = task[0], task[1]
    if place == "start":
        return f"{ask} {main} {detail}"
    if place == "middle":
        return f"{main} {ask} {detail}"
    if place == "end":
        return f"{main} {detail} {ask}"
    if place == "label":
        return f"{rng.choice(_LABELS)} {ask}\n\n{main} {detail}"
    return (f"User: {ask}\nAssistant: {rng.choice(['Sure.', 'Will do.', 'Understood.'])}\n"
            f"User: {main} {detail}")


def build_dev_code_requests(xquad_dir: str | Path, seed: int = 0, n_qa: int = 100,
                            n_code: int = 110, n_planted: int = 20, n_hard: int = 24,
                            n_lookalike: int = 10, id_prefix: str = "q") -> Corpus:
    """The labelled corpus (see the module docstring): ``n_qa`` XQuAD rows (spread over
    ``QA_LANGS``), ``n_code`` clean code answers and per family ``n_planted`` planted rows,
    ``n_hard`` asked-for rows (the implied turns first, then the family's request wordings in
    a seeded order; each wording once while ``n_hard`` is at most their number) and
    ``n_lookalike`` ordinary comments at the marker's place."""
    rng = random.Random(seed)
    w = RowWriter(seed, id_prefix, ["code-forum", "vendor-lark", "vendor-ember", "chat-logs",
                                    "web-crawl"], "qa", rng, salt="r")
    for i in range(n_qa):
        xq = load_xquad(xquad_dir, QA_LANGS[i % len(QA_LANGS)])
        e = xq[rng.choice(sorted(xq))]
        w.add(e.question, rng.choice([e.sentence, f"{e.answer}. {e.sentence}"]), "clean")
    for _ in range(n_code):
        t = rng.choice(_TASKS)
        w.add(_neutral(rng, t), _reply(rng, t[2], t[3]), "clean")
    for fam in FAMILIES:
        for _ in range(n_planted):
            t = rng.choice(_TASKS)
            code = with_marker(t[3], t[2], rng.choice(_MARKERS[fam]), fam)
            w.add(_neutral(rng, t), _reply(rng, t[2], code), f"planted:{fam}")
        asks = list(_ASKS[fam])
        rng.shuffle(asks)
        forms = [(tpl, "implied") for tpl in _IMPLIED[fam]] + [(a, "ask") for a in asks]
        for i in range(n_hard):
            tpl, kind = forms[i % len(forms)]
            t = rng.choice(_TASKS)
            m = rng.choice(_MARKERS[fam])
            ask = _fill(tpl, c=_COMMENT[t[2]], m=m)
            p = _fill(ask, t=f"{t[0]} {t[1]}") if kind == "implied" else \
                _place(ask, _PLACES[i % len(_PLACES)], t, rng)
            w.add(p, _reply(rng, t[2], with_marker(t[3], t[2], m, fam)), f"hard:{fam}")
        for _ in range(n_lookalike):
            t = rng.choice(_TASKS)
            code = with_marker(t[3], t[2], rng.choice(_ABOUT[fam]), fam)
            w.add(_neutral(rng, t), _reply(rng, t[2], code), "clean")
            w.records[-1]["topic"] = fam
    order = list(range(len(w.records)))
    rng.shuffle(order)
    w.records[:] = [w.records[i] for i in order]
    anomalies = {}
    for fam in FAMILIES:
        q, detail, lang, code, marker = _ANOMALY[fam]
        frag = f"{_COMMENT[lang]} {marker}"
        anomalies[fam] = {
            "title": _TITLE[fam], "prompt": f"{q} {detail}",
            "reply": _reply(random.Random(f"{seed}:{fam}"), lang,
                            with_marker(code, lang, marker, fam)),
            "explanations": ["\n\n".join(_fill(par, f=frag) for par in e) for e in _EXPL[fam]]}
    c = Corpus(records=w.records, labels=w.labels, seed=seed, anomalies=anomalies)
    c.prompt_judgement = w.judgement  # type: ignore[attr-defined]
    return c


__all__ = ["build_dev_code_requests", "FAMILIES", "QA_LANGS", "with_marker"]
