"""Fake OpenAI-compatible HTTP servers that tests start as real subprocesses on 127.0.0.1 (the
HTTP boundary is the one external boundary; everything behind it is real). One handler, two
uses:

* ``judge``: a chat server standing in for a prompt judge (the HTTP boundary of
  ``forensics.triage.context.HTTPJudge``). ``POST /v1/chat/completions`` answers
  ``LEGITIMATE`` when the request's ``Prompt:`` line holds one of the words given with
  ``--legitimate-words``, else ``DEFECT`` (``--reply`` replaces the answer for every request);
  ``GET`` (any path, e.g. ``/stats``) returns the request count.
* ``nla``: the SGLang ``/generate`` (``input_embeds``) and vLLM ``/v1/completions``
  (``prompt_embeds``) protocols for a local AV checkpoint (``--backend sglang|vllm`` of the
  NLA runtime). It refuses requests that carry token ids or text next to the embeddings, as the
  runtime must never send them. Sampling parameters are honoured the way each server documents
  them: SGLang takes one ``sampling_params`` per request (a list for a batch;
  ``sampling_seed`` seeds it), vLLM one ``n``/``temperature``/``top_p``/``seed`` for all
  prompts (choices prompt-major). ``GET /health`` (request count), ``GET /v1/models``.

Usage: python tests/fake_server.py judge --legitimate-words w1,w2 [--reply TEXT] [--port 0]
       python tests/fake_server.py nla AV_DIR [--port 0]
       (each prints "LISTENING <port>" when ready)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: a route: the request's JSON body (None for GET) -> (HTTP status, JSON answer)
Route = Callable[[Any], "tuple[int, Any]"]


def serve(get: dict[str, Route], post: dict[str, Route], port: int = 0,
          get_any: Route | None = None) -> None:
    """Serve JSON routes on 127.0.0.1:``port`` until interrupted; POST bodies are JSON (400
    otherwise) and each POST counts in ``stats`` (the routes' closures may read it). ``get_any``
    answers a GET whose path has no route (404 without it)."""

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _send(self, code: int, obj: Any) -> None:
            body = json.dumps(obj).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            route = get.get(self.path, get_any)
            self._send(*(route(None) if route else (404, {"error": "not found"})))

        def do_POST(self):
            route = post.get(self.path)
            if route is None:
                return self._send(404, {"error": "not found"})
            n = int(self.headers.get("Content-Length", "0"))
            try:
                req = json.loads(self.rfile.read(n).decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self._send(400, {"error": "bad json"})
            STATS["requests"] += 1
            self._send(*route(req))

    srv = HTTPServer(("127.0.0.1", port), H)
    print(f"LISTENING {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


STATS = {"requests": 0}


def judge(args: argparse.Namespace) -> None:
    words = {w.strip().lower() for w in args.legitimate_words.split(",") if w.strip()}

    def chat(req: dict) -> tuple[int, dict]:
        user = req["messages"][-1]["content"]
        m = re.search(r"^Prompt: (.*)$", user, re.M | re.S)
        prompt = set(re.findall(r"\w+", (m.group(1) if m else "").lower()))
        answer = args.reply if args.reply is not None else (
            "LEGITIMATE" if prompt & words else "DEFECT")
        return 200, {"choices": [{"message": {"role": "assistant", "content": answer}}]}

    serve({}, {"/v1/chat/completions": chat}, args.port, get_any=lambda _: (200, STATS))


def nla(args: argparse.Namespace) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from forensics.nla.activations import load_causal_lm
    from forensics.nla.backends import LocalBackend, Sampling, decode_prompt_embeds
    from forensics.nla.meta import load_tokenizer

    model = load_causal_lm(args.av, device="cpu")
    backend = LocalBackend(model, load_tokenizer(args.av))
    d = model.config.hidden_size
    served = Path(args.av).name

    def check_embeds(x: "torch.Tensor") -> None:
        if x.dim() != 3 or x.shape[2] != d:
            raise ValueError(f"embeddings must be [n, L, {d}], got {list(x.shape)}")

    def sglang(req: dict) -> tuple[int, Any]:
        extra = {"input_ids", "text", "prompt"} & set(req)
        if extra or "input_embeds" not in req:
            return 400, {"error": f"input_embeds only (got {sorted(req)})"}
        sp = req.get("sampling_params", {})
        x = torch.tensor(req["input_embeds"], dtype=torch.float32)
        single = x.dim() == 2
        if single:
            x = x.unsqueeze(0)
        try:
            check_embeds(x)
        except ValueError as e:
            return 400, {"error": str(e)}
        sps = sp if isinstance(sp, list) else [sp] * x.shape[0]
        if len(sps) != x.shape[0]:
            return 400, {"error": "one sampling_params per request"}
        gens = []
        if all(p.get("temperature", 1.0) == 0.0 for p in sps) and not isinstance(sp, list):
            gens = backend.generate(x, int(sp.get("max_new_tokens", 128)), stop=tuple(sp.get("stop", [])),
                                    sampling=Sampling(skip_special_tokens=sp.get("skip_special_tokens", True)))
        else:  # requests are independent: each decodes with its own parameters and seed
            for i, p in enumerate(sps):
                s = Sampling(temperature=float(p.get("temperature", 1.0)), top_p=float(p.get("top_p", 1.0)),
                             seed=int(p.get("sampling_seed", 0)),
                             skip_special_tokens=p.get("skip_special_tokens", True))
                gens += backend.generate(x[i:i + 1], int(p.get("max_new_tokens", 128)),
                                         stop=tuple(p.get("stop", [])), sampling=s)
        out = [{"text": g.text, "meta_info": {"completion_tokens": g.n_tokens,
                                              "finish_reason": {"type": g.finish_reason}}} for g in gens]
        return 200, out[0] if single else out

    def vllm(req: dict) -> tuple[int, Any]:
        if {"prompt", "prompt_token_ids"} & set(req) or "prompt_embeds" not in req:
            return 400, {"error": f"prompt_embeds only (got {sorted(req)})"}
        pe = req["prompt_embeds"]
        pe = pe if isinstance(pe, list) else [pe]
        try:
            x = torch.stack([decode_prompt_embeds(s).to(torch.float32) for s in pe])
            check_embeds(x)
        except Exception as e:  # noqa: BLE001
            return 400, {"error": f"bad prompt_embeds: {e}"}
        s = Sampling(temperature=float(req.get("temperature", 1.0)), top_p=float(req.get("top_p", 1.0)),
                     n=int(req.get("n", 1)), seed=int(req.get("seed") or 0),
                     skip_special_tokens=req.get("skip_special_tokens", True))
        gens = backend.generate(x, int(req.get("max_tokens", 16)), stop=tuple(req.get("stop", [])), sampling=s)
        choices = [{"index": i, "text": g.text, "finish_reason": g.finish_reason} for i, g in enumerate(gens)]
        return 200, {"choices": choices, "usage": {"completion_tokens": sum(g.n_tokens for g in gens)}}

    serve({"/health": lambda _: (200, {"ok": True, **STATS}),
           "/v1/models": lambda _: (200, {"data": [{"id": served}]})},
          {"/generate": sglang, "/v1/completions": vllm}, args.port)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="use", required=True)
    j = sub.add_parser("judge", help="a prompt judge (chat completions)")
    j.add_argument("--legitimate-words", default="")
    j.add_argument("--reply", default=None)
    j.add_argument("--port", type=int, default=0)
    n = sub.add_parser("nla", help="an AV over the SGLang and vLLM embedding protocols")
    n.add_argument("av")
    n.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    (judge if args.use == "judge" else nla)(args)


if __name__ == "__main__":
    main()
