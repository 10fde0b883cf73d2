"""CLI for the NLA runtime: ``nla register|list|check``, ``explain anomaly|dataset``,
``explanations import``. Thin wrappers over :mod:`forensics.nla` (registry, explain, explanations)."""

from __future__ import annotations

import os

import click

from forensics.cli._common import console, emit_json, err_console, frame_table, handle_errors, json_option

_POS_HELP = ("Positions: last_prompt, first_reply, every_reply, reply:N, token:N "
             "(repeat or comma-separate).")


def _group(main: click.Group, name: str, help_text: str) -> click.Group:
    """Reuse a group another area already registered under ``name`` (e.g. nla_train adds
    ``nla train``), else create it."""
    g = main.commands.get(name)
    if isinstance(g, click.Group):
        return g

    @click.group(name=name, help=help_text)
    def grp() -> None:
        pass

    main.add_command(grp)
    return grp


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass


def _backend_options(f):
    f = click.option("--server-model", default=None, help="vLLM: model name (default: the first listed).")(f)
    f = click.option("--server", default=None, metavar="URL", help="Server URL for --backend sglang|vllm.")(f)
    f = click.option("--backend", type=click.Choice(["local", "sglang", "vllm"]), default="local",
                     show_default=True, help="Where the AV generates.")(f)
    f = click.option("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when present).")(f)
    f = click.option("--max-new-tokens", type=int, default=200, show_default=True)(f)
    f = click.option("--variance", type=float, default=None,
                     help="Dataset variance for FVE (default: recorded for the NLA, else estimated).")(f)
    f = click.option("--temperature", type=float, default=0.0, show_default=True,
                     help="AV sampling temperature; 0 = greedy.")(f)
    f = click.option("--top-p", "top_p", type=float, default=1.0, show_default=True,
                     help="Nucleus sampling threshold (with --temperature > 0).")(f)
    f = click.option("--samples", "n_samples", type=int, default=1, show_default=True,
                     help="Explanations sampled per activation, each scored by the AR (needs --temperature > 0).")(f)
    f = click.option("--sampling-seed", "sample_seed", type=int, default=0, show_default=True,
                     help="Seed of the AV sampling (with --temperature > 0).")(f)
    f = click.option("--skip-special-tokens/--keep-special-tokens", default=True, show_default=True,
                     help="Drop special tokens from the decoded AV output.")(f)
    f = click.option("--av-prompt", default=None,
                     help="Custom AV user message with the marker <INJECT> where the vector goes "
                          "(default: the sidecar's template).")(f)
    f = click.option("--ar-input", type=click.Choice(["raw", "stripped"]), default="raw", show_default=True,
                     help="What the AR scores when the AV output has no complete tag pair: the raw "
                          "output (the reference's rule) or the tag-stripped text.")(f)
    return f


def _generation(kw: dict) -> dict:
    """Pop the generation options of :func:`_backend_options` into explain/check keywords."""
    from forensics.nla.backends import Sampling

    return {"sampling": Sampling(temperature=kw.pop("temperature"), top_p=kw.pop("top_p"),
                                 n=kw.pop("n_samples"), seed=kw.pop("sample_seed"),
                                 skip_special_tokens=kw.pop("skip_special_tokens")),
            "av_prompt": kw.pop("av_prompt"), "ar_input": kw.pop("ar_input")}


def register(main: click.Group) -> None:
    nla = _group(main, "nla", "Natural Language Autoencoders: register, list, check.")
    explain = _group(main, "explain", "Turn activations into stored NLA explanations.")
    expl = _group(main, "explanations", "Explanations produced elsewhere.")

    # ------------------------------------------------------------------ nla register
    @nla.command("register")
    @click.argument("name")
    @click.option("--av", "av", required=True, type=click.Path(file_okay=False), help="AV checkpoint directory.")
    @click.option("--ar", "ar", default=None, type=click.Path(file_okay=False), help="AR checkpoint directory.")
    @click.option("--target", required=True, type=click.Path(file_okay=False), help="Target model directory.")
    @click.option("--layer", type=int, default=None, help="Layer K (default: from the sidecars).")
    @click.option("--hidden-state-index", type=int, default=None,
                  help="HF hidden_states index that is 'layer K' (default K+1 = output of block K).")
    @click.option("--variance", type=float, default=None, help="Training-set variance for FVE (e.g. 0.7335).")
    @click.option("--replace", is_flag=True, help="Replace an NLA of the same name with other paths.")
    @json_option
    @click.pass_obj
    @handle_errors
    def nla_register(obj, name, av, ar, target, layer, hidden_state_index, variance, replace, as_json):
        """Validate an NLA (sidecars vs tokenizers, d_model vs target, layer) and record it."""
        _quiet_transformers()
        from forensics.nla.registry import register_nla

        import warnings

        with obj.open() as ws, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sidecar warnings are printed once below
            rec, status = register_nla(ws, name, av, target, ar, layer, hidden_state_index, variance, replace)
        out = {"name": rec.name, "status": status, "layer": rec.layer,
               "hidden_state_index": rec.hidden_state_index, "d_model": rec.d_model,
               "av": rec.av_path, "ar": rec.ar_path, "target": rec.target_path,
               "injection_scale": rec.meta["av"]["injection_scale"],
               "mse_scale": (rec.meta.get("ar") or {}).get("mse_scale"), "variance": rec.variance(),
               "warnings": rec.meta.get("warnings") or []}
        for w in out["warnings"]:
            err_console.print(f"warning: {w}", markup=False)
        if as_json:
            emit_json(out)
        else:
            console.print(f"NLA [bold]{rec.name}[/] {status}: layer {rec.layer} "
                          f"(hidden_states[{rec.hidden_state_index}]), d_model {rec.d_model}"
                          f"{'' if rec.ar_path else ', no AR (no scores)'}")

    # ------------------------------------------------------------------ nla list
    @nla.command("list")
    @json_option
    @click.pass_obj
    @handle_errors
    def nla_list(obj, as_json):
        """Registered NLAs."""
        from forensics.nla.registry import list_nlas

        with obj.open(read_only=True) as ws:
            df = list_nlas(ws)
        if as_json:
            emit_json({"nlas": df})
        else:
            console.print(frame_table(df, title="NLAs"))

    # ------------------------------------------------------------------ nla check
    @nla.command("check")
    @click.argument("name")
    @click.option("--dataset", required=True)
    @click.option("--n", "n", type=int, default=200, show_default=True, help="Samples to check.")
    @click.option("--position", "positions", multiple=True, help=_POS_HELP + " Default last_prompt.")
    @click.option("--batch-size", type=int, default=8, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True, help="Which samples are picked.")
    @click.option("--min-fve", type=float, default=None, help="Exit 1 when the mean FVE is below this.")
    @_backend_options
    @json_option
    @click.pass_obj
    @handle_errors
    def nla_check(obj, name, dataset, n, positions, batch_size, seed, min_fve, server_model, server, backend,
                  device, max_new_tokens, variance, as_json, **gen):
        """How faithfully NAME reads this model on DATASET (FVE/cos distributions, bad decodes)."""
        _quiet_transformers()
        from forensics.errors import CheckFailed
        from forensics.nla.registry import check_nla

        with obj.open() as ws:
            res = check_nla(ws, name, dataset, n, list(positions) or None, batch_size=batch_size, backend=backend,
                            server=server, device=device, variance=variance, max_new_tokens=max_new_tokens,
                            seed=seed, **_generation(gen))
        if as_json:
            emit_json(res)
        else:
            err_console.print(f"{res['explained']} explanations of {res['samples']} samples in {res['seconds']} s")
            for k in ("fve", "cos", "mse"):
                d = res[k]
                console.print(f"{k:4} mean {d['mean']}  median {d['median']}  p10 {d['p10']}  p90 {d['p90']}")
            console.print(f"variance {res['variance']} ({res['variance_source']})")
            console.print(f"truncated {res['share_truncated']}  failed {res['share_failed']}  "
                          f"early {res['share_early_position']}  outlier {res['share_norm_outlier']}")
        if min_fve is not None and (res["fve"]["mean"] is None or res["fve"]["mean"] < min_fve):
            raise CheckFailed(f"mean FVE {res['fve']['mean']} is below --min-fve {min_fve}",
                              hint="do not trust this NLA's explanations on this model/data")

    # ------------------------------------------------------------------ explain anomaly
    @explain.command("anomaly")
    @click.argument("anomaly_id", type=int)
    @click.option("--nla", "nla_name", required=True)
    @click.option("--position", "positions", multiple=True, help=_POS_HELP + " Default last_prompt,first_reply.")
    @click.option("--batch-size", type=int, default=16, show_default=True)
    @_backend_options
    @json_option
    @click.pass_obj
    @handle_errors
    def explain_anomaly_cmd(obj, anomaly_id, nla_name, positions, batch_size, server_model, server, backend, device,
                            max_new_tokens, variance, as_json, **gen):
        """Run the target on an anomaly's prompt+reply, explain, score, store on the anomaly."""
        _quiet_transformers()
        from forensics.nla.explain import explain_anomaly

        with obj.open() as ws:
            res = explain_anomaly(ws, anomaly_id, nla_name, list(positions) or None, backend=backend,
                                  server=server, device=device, variance=variance,
                                  max_new_tokens=max_new_tokens, batch_size=batch_size, **_generation(gen))
        if as_json:
            emit_json(res)
            return
        console.print(f"anomaly {anomaly_id}: {res['stored']} explanations stored (NLA {nla_name}, "
                      f"layer {res['layer']}, hidden_states[{res['hidden_state_index']}])")
        for e in res["explanations"]:
            sc = "" if e["mse"] is None else f" mse {e['mse']:.3f} cos {e['cos']:.3f}" + (
                "" if e["fve"] is None else f" fve {e['fve']:.3f}")
            flags = f" [{', '.join(e['flags'])}]" if e["flags"] else ""
            samp = f" sample {e['sample_index']}" if res["generation"]["n"] > 1 else ""
            console.print(f"[bold]{e['position']}[/] (token {e['token_index']}){samp}{sc}{flags}"
                          f"{' TRUNCATED' if e['truncated'] else ''}", markup=True)
            console.print("  " + (e["text"][:600] or "(empty)"), markup=False)

    # ------------------------------------------------------------------ explain dataset
    @explain.command("dataset")
    @click.argument("dataset")
    @click.option("--nla", "nla_name", required=True)
    @click.option("--position", "positions", multiple=True, help=_POS_HELP + " Default last_prompt.")
    @click.option("--limit", type=int, default=None, help="Only the first N samples (by sample_id).")
    @click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
    @click.option("--actors", type=int, default=1, show_default=True, help="Ray actor pool size.")
    @click.option("--batch-size", type=int, default=8, show_default=True)
    @_backend_options
    @json_option
    @click.pass_obj
    @handle_errors
    def explain_dataset_cmd(obj, dataset, nla_name, positions, limit, engine, actors, batch_size, server_model,
                            server, backend, device, max_new_tokens, variance, as_json, **gen):
        """Explain training samples into `explanations` (resumable, idempotent)."""
        _quiet_transformers()
        from forensics.cli._progress import RichProgress
        from forensics.nla.explain import explain_dataset

        with obj.open() as ws, RichProgress(err_console) as progress:
            st = explain_dataset(ws, dataset, nla_name, list(positions) or None, limit=limit,
                                 batch_size=batch_size, engine=engine, backend=backend, server=server,
                                 device=device, variance=variance, max_new_tokens=max_new_tokens,
                                 actors=actors, progress=progress, **_generation(gen))
        if as_json:
            emit_json(st)
        else:
            console.print(
                f"{st.explanations_stored} explanations for {st.samples_processed} samples "
                f"({st.skipped_done} already done) in {st.seconds} s ({st.setup_seconds} s loading): "
                f"{st.explanations_per_s} expl/s, "
                f"{st.tokens_per_s} generated tokens/s; truncated {st.truncated}, non-finite {st.non_finite}; "
                f"variance {st.variance} ({st.variance_source})")

    # ------------------------------------------------------------------ explanations import
    @expl.command("import")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--dataset", required=True)
    @click.option("--nla-label", default=None, help="nla_id to record (default import:<file stem>).")
    @json_option
    @click.pass_obj
    @handle_errors
    def explanations_import(obj, file, dataset, nla_label, as_json):
        """Import explanations (JSONL or Parquet: row_id, text, [position, layer, mse, cos, fve, raw_output])."""
        from forensics.nla.explanations import import_explanations

        with obj.open() as ws:
            st = import_explanations(ws, file, dataset, nla_label)
        if as_json:
            emit_json(st)
        else:
            console.print(f"{st.file}: {st.rows_read} rows, {st.added} added, {st.unchanged} already present, "
                          f"{st.rejected} rejected {st.reject_reasons or ''}")
            if st.rejected:
                err_console.print("inspect: forensics sql \"SELECT line, reason, detail FROM rejects "
                                  "WHERE file = '...' ORDER BY line\"", markup=False)
