"""The NLA registry: validate an NLA's checkpoints against its target, record it in the
workspace table ``nlas``, look it up, and check how faithfully it reads a dataset.

``check_nla`` lives here because it answers a question about a registered NLA (is it good on
this data?) and stores nothing; explaining into the workspace is :mod:`forensics.nla.explain`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from forensics.errors import InputError, NotFoundError
from forensics.nla.activations import default_hidden_state_index, parse_positions
from forensics.nla.explainer import Explainer, apply_variance, resolve_variance
from forensics.nla.meta import NLAContractError, check_ar_sidecar, check_av_sidecar, load_tokenizer, parse_sidecar


@dataclass
class NLARecord:
    """One row of ``nlas``."""

    name: str
    av_path: str
    ar_path: str | None
    target_path: str
    layer: int
    hidden_state_index: int
    d_model: int
    meta: dict = field(default_factory=dict)

    def variance(self) -> float | None:
        """The dataset variance recorded for this NLA's convention (given or estimated)."""
        v = (self.meta.get("variance") or {}).get(f"L{self.layer}|h{self.hidden_state_index}")
        return float(v["value"]) if isinstance(v, dict) and v.get("value") else None


def _read_config(path: Path):
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise NLAContractError(f"{path}: config.json: cannot load ({type(e).__name__}: {e})",
                               hint="point at a local Hugging Face model directory") from None
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def validate_nla(av: str | Path, target: str | Path, ar: str | Path | None = None,
                 layer: int | None = None, hidden_state_index: int | None = None) -> dict:
    """Load and cross-check everything an NLA needs without loading any weights.

    Returns a dict with the resolved layer, hidden_state_index, d_model and parsed sidecars.
    Raises :class:`NLAContractError` (exit 2) naming the file and field on any mismatch.
    """
    from safetensors import safe_open

    av, target = Path(av).resolve(), Path(target).resolve()
    for p, what in ((av, "--av"), (target, "--target")):
        if not p.is_dir():
            raise InputError(f"{what} {p}: not a directory")
    av_tok = load_tokenizer(av)
    av_sc = parse_sidecar(av, role="av")
    slot = check_av_sidecar(av_sc, av_tok)
    d = av_sc.d_model
    tcfg = _read_config(target)
    if int(tcfg.hidden_size) != d:
        raise NLAContractError(f"{av_sc.path}: d_model: sidecar says {d}, the target "
                               f"{target} has hidden_size {tcfg.hidden_size}",
                               hint="this NLA was trained for another model")
    avcfg = _read_config(av)
    if int(avcfg.hidden_size) != d:
        raise NLAContractError(f"{av_sc.path}: d_model: sidecar says {d}, the AV's config has "
                               f"hidden_size {avcfg.hidden_size}")
    load_tokenizer(target)  # the target must be usable on its own
    n_layers = int(tcfg.num_hidden_layers)
    ar_sc = None
    if ar is not None:
        ar = Path(ar).resolve()
        if not ar.is_dir():
            raise InputError(f"--ar {ar}: not a directory")
        ar_sc = parse_sidecar(ar, role="ar")
        check_ar_sidecar(ar_sc, load_tokenizer(ar))
        if ar_sc.d_model != d:
            raise NLAContractError(f"{ar_sc.path}: d_model: AR says {ar_sc.d_model}, AV says {d}")
        arcfg = _read_config(ar)
        if int(arcfg.num_hidden_layers) != ar_sc.layer + 1:
            raise NLAContractError(f"{ar_sc.path}: ar.num_hidden_layers: sidecar says K={ar_sc.layer}, "
                                   f"the AR's config.json keeps {arcfg.num_hidden_layers} blocks "
                                   f"(expected K+1={ar_sc.layer + 1})")
        vh = ar / "value_head.safetensors"
        if not vh.exists():
            raise NLAContractError(f"{ar}: value_head.safetensors: missing")
        with safe_open(str(vh), framework="pt") as f:
            shapes = [list(f.get_slice(k).get_shape()) for k in f.keys()]
        if [d, d] not in shapes:
            raise NLAContractError(f"{vh}: weight: expected a [{d}, {d}] tensor, found shapes {shapes}")
    # layer: --layer, else the AR's K, else the AV sidecar's (extraction_layer_index, ...)
    def src(what: str, sc) -> str:
        return f"{what} sidecar's extraction layer ({', '.join(sc.layer_fields)})"

    known = {k: v for k, v in ((src("AR", ar_sc) if ar_sc else "", ar_sc.layer if ar_sc else None),
                                (src("AV", av_sc), av_sc.layer)) if v is not None}
    if layer is None:
        if not known:
            raise InputError("--layer is required: neither sidecar records the extraction layer")
        layer = next(iter(known.values()))
    for src, v in known.items():
        if v != layer:
            raise NLAContractError(f"--layer {layer} disagrees with the {src} = {v}",
                                   hint="an NLA only reads the layer it was trained on")
    if not 0 <= layer < n_layers:
        raise InputError(f"--layer {layer}: the target {target} has {n_layers} blocks (0..{n_layers - 1})")
    hsi = default_hidden_state_index(layer) if hidden_state_index is None else int(hidden_state_index)
    if not 0 <= hsi <= n_layers:
        raise InputError(f"--hidden-state-index {hsi}: the target has hidden_states[0..{n_layers}]")
    return {"av": str(av), "ar": str(ar) if ar else None, "target": str(target), "layer": layer,
            "hidden_state_index": hsi, "d_model": d, "av_sidecar": av_sc.to_json(),
            "ar_sidecar": ar_sc.to_json() if ar_sc else None, "av_slot": slot,
            "warnings": av_sc.warnings + (ar_sc.warnings if ar_sc else []),
            "target_config": {"model_type": tcfg.model_type, "hidden_size": int(tcfg.hidden_size),
                              "num_hidden_layers": n_layers}}


def register_nla(ws, name: str, av: str | Path, target: str | Path, ar: str | Path | None = None,
                 layer: int | None = None, hidden_state_index: int | None = None,
                 variance: float | None = None, replace: bool = False) -> tuple[NLARecord, str]:
    """Validate and record an NLA; returns (record, 'added' | 'unchanged' | 'replaced')."""
    if not name or any(c in name for c in "|\n\r\t"):
        raise InputError(f"NLA name {name!r}: must be non-empty without '|' or control characters")
    v = validate_nla(av, target, ar, layer, hidden_state_index)
    meta = {"av": v["av_sidecar"], "ar": v["ar_sidecar"], "av_slot": v["av_slot"],
            "target": v["target_config"], "variance": {}, "warnings": v["warnings"]}
    if variance is not None:
        if not (variance > 0 and math.isfinite(variance)):
            raise InputError(f"--variance {variance}: must be a positive number")
        meta["variance"][f"L{v['layer']}|h{v['hidden_state_index']}"] = {"value": float(variance),
                                                                         "source": "given"}
    old = get_nla(ws, name, missing_ok=True)
    status = "added"
    if old is not None:
        same = (old.av_path, old.ar_path, old.target_path, old.layer, old.hidden_state_index) == (
            v["av"], v["ar"], v["target"], v["layer"], v["hidden_state_index"])
        if same:
            if variance is None:
                meta["variance"] = old.meta.get("variance", {})
            status = "unchanged" if variance is None else "replaced"
        elif not replace:
            raise InputError(f"NLA {name!r} is already registered with other paths or layer",
                             hint="pick another name, or pass --replace")
        else:
            status = "replaced"
    ws.execute("DELETE FROM nlas WHERE name = ?", [name])
    ws.execute("INSERT INTO nlas (name, av_path, ar_path, target_path, layer, hidden_state_index, d_model, meta)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               [name, v["av"], v["ar"], v["target"], v["layer"], v["hidden_state_index"], v["d_model"],
                json.dumps(meta)])
    return get_nla(ws, name), status


def get_nla(ws, name: str, missing_ok: bool = False) -> NLARecord | None:
    row = ws.one("SELECT name, av_path, ar_path, target_path, layer, hidden_state_index, d_model, meta "
                 "FROM nlas WHERE name = ?", [name])
    if row is None:
        if missing_ok:
            return None
        known = [r[0] for r in ws.rows("SELECT name FROM nlas ORDER BY 1")]
        raise NotFoundError(f"NLA {name!r} is not registered in {ws.root}",
                            hint=("known: " + ", ".join(known)) if known else
                            "register one: forensics nla register NAME --av DIR --ar DIR --target DIR")
    meta = row[7]
    meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
    return NLARecord(*row[:7], meta=meta)


def list_nlas(ws):
    return ws.sql("SELECT name, layer, hidden_state_index, d_model, av_path, ar_path, target_path, "
                  "registered_at FROM nlas ORDER BY name")


def save_variance(ws, rec: NLARecord, value: float, source: str) -> None:
    """Record the FVE denominator for ``rec``'s convention in ``nlas.meta`` (and on ``rec``)."""
    meta = dict(rec.meta)
    var = dict(meta.get("variance") or {})
    var[f"L{rec.layer}|h{rec.hidden_state_index}"] = {"value": value, "source": source}
    meta["variance"] = var
    rec.meta = meta
    ws.execute("UPDATE nlas SET meta = ? WHERE name = ?", [json.dumps(meta), rec.name])


# ---------------------------------------------------------------------------------- check


def _dist(xs: list[float]) -> dict:
    import numpy as np

    if not xs:
        return {"n": 0, "mean": None, "median": None, "p10": None, "p90": None}
    a = np.asarray(xs, dtype=np.float64)
    return {"n": int(a.size), "mean": round(float(a.mean()), 4), "median": round(float(np.median(a)), 4),
            "p10": round(float(np.percentile(a, 10)), 4), "p90": round(float(np.percentile(a, 90)), 4)}


def check_nla(ws, nla: str, dataset: str, n: int = 200, positions=None, *, batch_size: int = 8,
              backend: str = "local", server: str | None = None, device: str | None = None,
              variance: float | None = None, max_new_tokens: int = 200, seed: int = 0,
              explainer: Explainer | None = None, sampling=None, ar_input: str = "raw",
              av_prompt: str | None = None) -> dict:
    """How faithfully this NLA reads this model on this data (nothing is stored).

    Runs target -> AV -> AR on ``n`` samples (a deterministic pseudo-random pick) and reports
    FVE and cos distributions, and the shares of truncated/failed decodes and of early /
    norm-outlier positions. FVE uses the given or recorded variance, else one estimated from
    the vectors of this check. With ``sampling.n > 1`` every sample is scored and ``fve_best``
    is the distribution of each position's best-scored sample.
    """
    ws.require_dataset(dataset)
    rec = get_nla(ws, nla)
    if not rec.ar_path:
        raise InputError(f"NLA {nla!r} has no AR: the check needs one to score reconstructions",
                         hint="re-register with --ar DIR")
    pos = parse_positions(positions or ["last_prompt"])
    rows = ws.rows("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                   "ORDER BY hash(sample_id + ?) LIMIT ?", [dataset, int(seed), int(n)])
    if not rows:
        raise InputError(f"dataset {dataset!r} has no samples")
    t0 = time.perf_counter()
    ex = explainer or Explainer(rec, backend=backend, server=server, device=device, max_new_tokens=max_new_tokens,
                                sampling=sampling, ar_input=ar_input, av_prompt=av_prompt)
    out, bad = ex.run([(p or "", r or "") for _, p, r in rows], pos, batch_size, None)
    if variance is not None or rec.variance() is not None:
        var, src = resolve_variance(rec, variance, [], "check")
    elif len(out) >= 2:
        from forensics.nla.ar import dataset_variance

        vecs = [r.vector for r in out if r.sample_index == 0]
        var, src = dataset_variance(vecs, ex.mse_scale), f"estimated from the {len(vecs)} checked vectors"
    else:
        var, src = None, "unknown"
    apply_variance(out, var)
    best: dict[tuple, float] = {}
    for r in out:
        if r.fve is not None:
            k = (r.item, r.position)
            best[k] = max(best.get(k, r.fve), r.fve)
    attempted = len(out) + len(bad)
    failed = len(bad) + sum(1 for r in out if "empty" in r.flags or "cjk_output" in r.flags)
    share = (lambda k: round(k / attempted, 4) if attempted else None)
    secs = time.perf_counter() - t0
    return {"nla": rec.name, "dataset": dataset, "layer": rec.layer,
            "hidden_state_index": rec.hidden_state_index, "positions": pos, "samples": len(rows),
            "explained": len(out), "variance": var, "variance_source": src,
            "generation": ex.generation(), "samples_per_position": ex.sampling.n,
            "fve": _dist([r.fve for r in out if r.fve is not None]),
            "fve_best": _dist(list(best.values())),
            "cos": _dist([r.cos for r in out if r.cos is not None]),
            "mse": _dist([r.mse for r in out if r.mse is not None]),
            "share_truncated": share(sum(1 for r in out if r.truncated)),
            "share_failed": share(failed),
            "share_early_position": share(sum(1 for r in out if "early_position" in r.flags)),
            "share_norm_outlier": share(sum(1 for r in out if "norm_outlier" in r.flags)),
            "seconds": round(secs, 2),
            "tokens_per_explanation": round(sum(r.n_tokens for r in out) / len(out), 1) if out else None}

