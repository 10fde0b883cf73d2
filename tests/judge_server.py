"""A fake OpenAI-compatible chat server standing in for a prompt judge (the HTTP boundary of
``forensics.triage.context.HTTPJudge``).

It answers ``LEGITIMATE`` when the request's ``Prompt:`` line holds one of the words given
with ``--legitimate-words``, else ``DEFECT`` (``--reply`` replaces the answer for every
request), and counts requests (``GET /stats``). Tests start it as a real subprocess.

Usage: python tests/judge_server.py --legitimate-words w1,w2 [--port 0] [--reply TEXT]
       (prints "LISTENING <port>" when ready)
"""

from __future__ import annotations

import argparse
import json
import re
from http.server import BaseHTTPRequestHandler, HTTPServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--legitimate-words", default="")
    ap.add_argument("--reply", default=None)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    words = {w.strip().lower() for w in args.legitimate_words.split(",") if w.strip()}
    stats = {"requests": 0}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _send(self, code: int, obj) -> None:
            body = json.dumps(obj).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._send(200, stats)

        def do_POST(self):
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": "not found"})
            n = int(self.headers.get("Content-Length", 0))
            req = json.loads(self.rfile.read(n).decode("utf-8"))
            stats["requests"] += 1
            user = req["messages"][-1]["content"]
            m = re.search(r"^Prompt: (.*)$", user, re.M | re.S)
            prompt = set(re.findall(r"\w+", (m.group(1) if m else "").lower()))
            answer = args.reply if args.reply is not None else (
                "LEGITIMATE" if prompt & words else "DEFECT")
            self._send(200, {"choices": [{"message": {"role": "assistant",
                                                      "content": answer}}]})

    srv = HTTPServer(("127.0.0.1", args.port), H)
    print(f"LISTENING {srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
