"""The activation reconstructor (AR): explanation text in, predicted vector out; and scoring.

The AR is the target architecture cut to its first K+1 blocks, final norm replaced by the
identity, no LM head, plus ``Linear(d, d, bias=False)`` from ``value_head.safetensors``.
The prediction is the value head applied to the last token's hidden state of the AR template
filled with the explanation (tokenized with special tokens).

Scoring (:func:`score`): both vectors rescaled to norm ``mse_scale`` (normally sqrt(d)), then
``mse = mean((p - g)^2)`` = ``2 (1 - cos)`` when ``mse_scale = sqrt(d)``; ``fve = 1 - mse / v``
with ``v`` the mean squared distance of the (equally rescaled) dataset vectors from their mean
(:func:`dataset_variance`). cos and FVE are reported in separate columns, never mixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from forensics.errors import BackendError
from forensics.nla.meta import VALUE_HEAD, NLAContractError, Sidecar, ar_prompt_ids, check_ar_sidecar, load_tokenizer, parse_sidecar


def _normalise(x, scale: float | None):
    import torch

    x = x.to(torch.float32)
    if scale is None:
        return x
    return x * (scale / x.norm(dim=-1, keepdim=True).clamp_min(1e-30))


def score(pred, orig, mse_scale: float | None, variance: float | None = None):
    """(mse, cos, fve) per row for predictions vs originals ([n, d] or [d]).

    ``fve`` is None when ``variance`` is None. All computed in fp32.
    """
    import torch

    p = torch.as_tensor(pred, dtype=torch.float32)
    g = torch.as_tensor(orig, dtype=torch.float32)
    if p.dim() == 1:
        p, g = p.unsqueeze(0), g.unsqueeze(0)
    pn, gn = _normalise(p, mse_scale), _normalise(g, mse_scale)
    mse = ((pn - gn) ** 2).mean(dim=-1)
    cos = torch.nn.functional.cosine_similarity(p, g, dim=-1)
    fve = None if variance is None or variance <= 0 else 1.0 - mse / float(variance)
    return mse, cos, fve


def dataset_variance(vectors, mse_scale: float | None) -> float:
    """Mean squared distance of the rescaled vectors from their mean (the FVE denominator):
    the MSE of always predicting the mean, in the same units as :func:`score`'s mse."""
    import torch

    v = torch.stack([torch.as_tensor(x, dtype=torch.float32).reshape(-1) for x in vectors])
    if v.shape[0] < 2:
        raise ValueError("need at least 2 vectors to estimate the dataset variance")
    vn = _normalise(v, mse_scale)
    return float(((vn - vn.mean(dim=0, keepdim=True)) ** 2).mean(dim=-1).mean())


class AR:
    """A loaded, contract-checked activation reconstructor.

    ``AR.load(dir).predict(["explanation one", ...]) -> FloatTensor [n, d]``.
    """

    def __init__(self, path: Path, sidecar: Sidecar, tokenizer, model, value_head):
        self.path = Path(path)
        self.sidecar = sidecar
        self.tokenizer = tokenizer
        self.model = model
        self.value_head = value_head

    @property
    def mse_scale(self) -> float | None:
        return self.sidecar.mse_scale

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, dtype: str | None = None) -> "AR":
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModel

        from forensics.nla.activations import pick_device

        path = Path(path)
        tok = load_tokenizer(path)
        sc = parse_sidecar(path, role="ar")
        check_ar_sidecar(sc, tok)
        kw = {"dtype": getattr(torch, dtype)} if dtype else {}
        try:
            model = AutoModel.from_pretrained(str(path), trust_remote_code=False, use_safetensors=True,
                                              local_files_only=True, **kw)
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"{path}: cannot load the AR backbone ({type(e).__name__}: {e})") from None
        base = getattr(model, "model", model) if not hasattr(model, "layers") else model
        base = getattr(base, "language_model", base)  # multimodal layouts: the text decoder
        if not hasattr(base, "layers") or not hasattr(base, "norm"):
            raise NLAContractError(f"{path}: config.json: the AR backbone has no .layers/.norm "
                                   f"({type(model).__name__}); unsupported architecture")
        n_blocks = len(base.layers)
        if sc.layer is not None and n_blocks != sc.layer + 1:
            raise NLAContractError(
                f"{sc.path}: ar.num_hidden_layers: sidecar says K={sc.layer} (so K+1={sc.layer + 1} "
                f"blocks), the AR checkpoint has {n_blocks} blocks")
        base.norm = torch.nn.Identity()  # the contract: final norm replaced by identity
        vh_path = path / VALUE_HEAD
        if not vh_path.exists():
            raise NLAContractError(f"{path}: {VALUE_HEAD}: missing (the AR's Linear(d, d) value head)")
        sd = load_file(str(vh_path))
        w = sd.get("weight")
        if w is None:
            ws = [t for t in sd.values() if t.dim() == 2]
            if len(ws) != 1:
                raise NLAContractError(f"{vh_path}: expected one [d, d] tensor ('weight'), found keys {list(sd)}")
            w = ws[0]
        d = sc.d_model
        if tuple(w.shape) != (d, d):
            raise NLAContractError(f"{vh_path}: weight: expected [{d}, {d}] (d_model), found {list(w.shape)}")
        hidden = base.config.hidden_size if hasattr(base.config, "hidden_size") else d
        if hidden != d:
            raise NLAContractError(f"{sc.path}: d_model: sidecar says {d}, the AR backbone is {hidden} wide")
        head = torch.nn.Linear(d, d, bias=False)
        with torch.no_grad():
            head.weight.copy_(w.to(torch.float32))
        dev = pick_device(device)
        base.eval().to(dev)
        head.eval().to(dev)
        return cls(path, sc, tok, base, head)

    def prompt_ids(self, explanation: str) -> list[int]:
        return ar_prompt_ids(self.sidecar, self.tokenizer, explanation)

    def predict(self, texts: Sequence[str], batch_size: int = 16):
        """Predicted vectors [n, d] (fp32, CPU) for explanation texts."""
        import torch

        dev = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        outs = []
        for s in range(0, len(texts), max(1, batch_size)):
            enc = [self.prompt_ids(t) for t in texts[s:s + batch_size]]
            m = max(len(e) for e in enc)
            ids = torch.full((len(enc), m), pad, dtype=torch.long)
            mask = torch.zeros((len(enc), m), dtype=torch.long)
            for r, e in enumerate(enc):  # right padding: causal attention never sees the pads
                ids[r, :len(e)] = torch.tensor(e)
                mask[r, :len(e)] = 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                h = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                               use_cache=False).last_hidden_state
                last = torch.tensor([len(e) - 1 for e in enc], device=dev)
                hl = h[torch.arange(len(enc), device=dev), last].to(torch.float32)
                outs.append(self.value_head(hl).cpu())
        if not outs:
            return torch.zeros((0, self.sidecar.d_model))
        return torch.cat(outs)
