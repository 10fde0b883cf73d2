"""A small HTTP server speaking the SGLang ``/generate`` (``input_embeds``) and vLLM
``/v1/completions`` (``prompt_embeds``) protocols for a local AV checkpoint.

Tests start it as a real subprocess on 127.0.0.1 and point ``--backend sglang|vllm`` at it:
the HTTP boundary is the one external boundary, everything behind it is the real tiny AV.
It refuses requests that carry token ids or text next to the embeddings, as the runtime must
never send them. Sampling parameters are honoured the way each server documents them: SGLang
takes one ``sampling_params`` per request (a list for a batch; ``sampling_seed`` seeds it),
vLLM one ``n``/``temperature``/``top_p``/``seed`` for all prompts (choices prompt-major).

Usage: python tests/nla_server.py AV_DIR [--port 0]   (prints "LISTENING <port>" when ready)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("av")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from forensics.nla.activations import load_causal_lm
    from forensics.nla.backends import LocalBackend, Sampling, decode_prompt_embeds
    from forensics.nla.meta import load_tokenizer

    model = load_causal_lm(args.av, device="cpu")
    tok = load_tokenizer(args.av)
    backend = LocalBackend(model, tok)
    d = model.config.hidden_size
    served = Path(args.av).name
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
            if self.path == "/health":
                return self._send(200, {"ok": True, **stats})
            if self.path == "/v1/models":
                return self._send(200, {"data": [{"id": served}]})
            return self._send(404, {"error": "not found"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            try:
                req = json.loads(self.rfile.read(n))
            except json.JSONDecodeError:
                return self._send(400, {"error": "bad json"})
            stats["requests"] += 1
            if self.path == "/generate":
                return self._sglang(req)
            if self.path == "/v1/completions":
                return self._vllm(req)
            return self._send(404, {"error": "not found"})

        def _check_embeds(self, x):
            if x.dim() != 3 or x.shape[2] != d:
                raise ValueError(f"embeddings must be [n, L, {d}], got {list(x.shape)}")

        def _sglang(self, req):
            extra = {"input_ids", "text", "prompt"} & set(req)
            if extra or "input_embeds" not in req:
                return self._send(400, {"error": f"input_embeds only (got {sorted(req)})"})
            sp = req.get("sampling_params", {})
            x = torch.tensor(req["input_embeds"], dtype=torch.float32)
            single = x.dim() == 2
            if single:
                x = x.unsqueeze(0)
            try:
                self._check_embeds(x)
            except ValueError as e:
                return self._send(400, {"error": str(e)})
            sps = sp if isinstance(sp, list) else [sp] * x.shape[0]
            if len(sps) != x.shape[0]:
                return self._send(400, {"error": "one sampling_params per request"})
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
            return self._send(200, out[0] if single else out)

        def _vllm(self, req):
            if {"prompt", "prompt_token_ids"} & set(req) or "prompt_embeds" not in req:
                return self._send(400, {"error": f"prompt_embeds only (got {sorted(req)})"})
            pe = req["prompt_embeds"]
            pe = pe if isinstance(pe, list) else [pe]
            try:
                x = torch.stack([decode_prompt_embeds(s).to(torch.float32) for s in pe])
                self._check_embeds(x)
            except Exception as e:  # noqa: BLE001
                return self._send(400, {"error": f"bad prompt_embeds: {e}"})
            temp = float(req.get("temperature", 1.0))
            s = Sampling(temperature=temp, top_p=float(req.get("top_p", 1.0)), n=int(req.get("n", 1)),
                         seed=int(req.get("seed") or 0), skip_special_tokens=req.get("skip_special_tokens", True))
            gens = backend.generate(x, int(req.get("max_tokens", 16)), stop=tuple(req.get("stop", [])), sampling=s)
            choices = [{"index": i, "text": g.text, "finish_reason": g.finish_reason} for i, g in enumerate(gens)]
            return self._send(200, {"choices": choices, "usage": {
                "completion_tokens": sum(g.n_tokens for g in gens)}})

    srv = HTTPServer(("127.0.0.1", args.port), H)
    print(f"LISTENING {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
