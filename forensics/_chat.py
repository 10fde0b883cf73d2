"""One chat-completions call to an OpenAI-compatible endpoint (the NLA summarizer's server, the
triage prompt judge): POST ``{model, temperature 0, max_tokens, messages}``, return the first
choice's text. Any failure (network, HTTP status, a body without ``choices``) raises
:class:`~forensics.errors.BackendError` naming ``what`` and the URL, with ``hint``.
"""

from __future__ import annotations

import json
import urllib.request

from forensics.errors import BackendError


def chat_completion(url: str, model: str, system: str, user: str, *, max_tokens: int,
                    api_key: str | None, timeout: float, what: str, hint: str) -> str:
    """The stripped text of the first choice of one greedy chat completion."""
    body = json.dumps({"model": model, "temperature": 0, "max_tokens": max_tokens,
                       "messages": [{"role": "system", "content": system},
                                    {"role": "user", "content": user}]}).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = json.loads(r.read().decode("utf-8"))
        return str(data["choices"][0]["message"]["content"]).strip()
    except Exception as e:  # noqa: BLE001
        raise BackendError(f"{what} {url}: {type(e).__name__}: {e}", hint=hint) from None


__all__ = ["chat_completion"]
