"""CLI: ``forensics nla train`` (train a tiny NLA) and ``forensics probe`` (counterfactual probes).

Thin wrappers over :mod:`forensics.nla.train` and :mod:`forensics.nla.probe`.
"""

from __future__ import annotations

import click

from forensics.cli._common import console, emit_json, err_console, handle_errors, json_option


def _nla_group(main: click.Group) -> click.Group:
    g = main.commands.get("nla")
    if isinstance(g, click.Group):
        return g

    @click.group(name="nla", help="NLA checkpoints: register, list, check, train.")
    def nla() -> None:
        pass

    main.add_command(nla)
    return nla


def _threads() -> None:
    """One intra-op thread on CPU: measured 5-10x faster than 2 on a shared 2-core box."""
    import os

    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(int(os.environ.get("FORENSICS_TORCH_THREADS", "1")))


def register(main: click.Group) -> None:
    nla = _nla_group(main)

    @nla.command("train")
    @click.option("--target", required=True, type=click.Path(file_okay=False, exists=True),
                  help="Target model directory (local Hugging Face causal LM).")
    @click.option("--layer", type=int, required=True, help="Layer K whose residual stream is explained.")
    @click.option("--dataset", required=True, help="Workspace dataset whose (prompt, reply) texts train the NLA.")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Output directory; AV in OUT/av, AR in OUT/ar (released layout).")
    @click.option("--sft-steps", type=int, default=300, show_default=True)
    @click.option("--rl-steps", type=int, default=30, show_default=True, help="GRPO steps (0 = skip RL).")
    @click.option("--limit", type=int, default=None, help="Use only the first N samples.")
    @click.option("--positions-per-text", type=int, default=6, show_default=True,
                  help="Random positions per text besides the last prompt token.")
    @click.option("--skip-tokens", type=int, default=3, show_default=True, help="Never sample the first N tokens.")
    @click.option("--hidden-state-index", type=int, default=None, help="HF hidden_states index (default K+1).")
    @click.option("--batch-size", type=int, default=32, show_default=True)
    @click.option("--rl-batch", type=int, default=8, show_default=True, help="Vectors per GRPO step.")
    @click.option("--rl-group", type=int, default=8, show_default=True, help="Explanations sampled per vector.")
    @click.option("--kl-coef", type=float, default=0.05, show_default=True)
    @click.option("--summarizer", type=click.Choice(["builtin", "http"]), default="builtin", show_default=True)
    @click.option("--summary-expected", type=int, default=3, show_default=True,
                  help="Builtin summaries name the target's top-k next tokens (0: off).")
    @click.option("--summary-before", type=int, default=2, show_default=True,
                  help="Builtin summaries quote this many words before the current one.")
    @click.option("--summarizer-url", default=None, metavar="URL",
                  help="OpenAI-compatible server for --summarizer http (POST URL/v1/chat/completions).")
    @click.option("--summarizer-model", default="default", show_default=True)
    @click.option("--device", default=None, help="cpu | cuda (default: cuda when present).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--register", "register_as", default=None, metavar="NAME",
                  help="Also register the trained NLA in the workspace under NAME.")
    @json_option
    @click.pass_obj
    @handle_errors
    def train(obj, target, layer, dataset, out_dir, sft_steps, rl_steps, limit, positions_per_text,
              skip_tokens, hidden_state_index, batch_size, rl_batch, rl_group, kl_coef, summarizer,
              summary_expected, summary_before, summarizer_url, summarizer_model, device, seed, register_as,
              as_json):
        """Train an AV + AR for TARGET at layer K on a dataset's texts (SFT warm start + GRPO)."""
        from forensics.errors import InputError
        from forensics.nla.train import HTTPSummarizer, TrainConfig, train_from_dataset

        _threads()
        if summarizer == "http" and not summarizer_url:
            raise InputError("--summarizer http needs --summarizer-url URL")
        summ = HTTPSummarizer(summarizer_url, summarizer_model) if summarizer == "http" else None
        cfg = TrainConfig(layer=layer, hidden_state_index=hidden_state_index, sft_steps=sft_steps,
                          rl_steps=rl_steps, positions_per_text=positions_per_text, skip_tokens=skip_tokens,
                          batch_size=batch_size, rl_batch=rl_batch, rl_group=rl_group, kl_coef=kl_coef, seed=seed, device=device,
                          summary_expected=summary_expected, summary_before=summary_before)

        from forensics.cli._progress import RichProgress

        with obj.open(read_only=True) as ws, RichProgress(err_console) as progress:
            rep = train_from_dataset(ws, dataset, target, out_dir, cfg, limit=limit, summarizer=summ,
                                     progress=progress)
        doc = rep.summary()
        if register_as:
            from forensics.nla.registry import register_nla

            with obj.open() as ws:
                rec, status = register_nla(ws, register_as, rep.av_dir, target, rep.ar_dir, layer=layer,
                                           hidden_state_index=hidden_state_index, variance=rep.variance,
                                           replace=True)
            doc["registered"] = {"name": rec.name, "status": status}
        if as_json:
            emit_json(doc)
            return
        from rich.table import Table

        t = Table(title=f"NLA trained for {target} layer {layer}")
        for c in ("stage", "FVE", "cos", "FVE shuffled", "FVE of summaries"):
            t.add_column(c)
        for name, ev in (("warm start (SFT)", rep.sft), ("RL (GRPO)", rep.rl)):
            if ev is not None:
                t.add_row(name, f"{ev.fve:.3f}", f"{ev.cos:.3f}", f"{ev.fve_shuffled:.3f}", f"{ev.fve_summaries:.3f}")
        console.print(t)
        console.print(f"AV -> {rep.av_dir}\nAR -> {rep.ar_dir}\nheld-out positions: {rep.n_heldout_positions}, "
                      f"train positions: {rep.n_train_positions}, variance {rep.variance:.4f}")
        ev = rep.rl or rep.sft
        for ex in ev.examples[:3]:
            console.print(f"  [dim]{ex['position']}[/] summary: {ex['summary']}\n    explanation: {ex['explanation']}",
                          markup=True, highlight=False)
        if register_as:
            console.print(f"registered as {register_as!r} ({doc['registered']['status']})")

    @main.command("probe")
    @click.argument("anomaly_id", type=int)
    @click.option("--target", required=True, type=click.Path(file_okay=False, exists=True),
                  help="Target model directory that produced the anomaly.")
    @click.option("--replace", "replacements", multiple=True, metavar="A=B",
                  help="Replace word A by B in the prompt (repeatable).")
    @click.option("--nla", "nla_name", default=None, help="Explain each variant's last prompt token with this NLA.")
    @click.option("--auto/--no-auto", default=True, show_default=True,
                  help="Add automatic variants: swap / drop the most salient words.")
    @click.option("--n-salient", type=int, default=2, show_default=True)
    @click.option("--max-new-tokens", type=int, default=24, show_default=True)
    @click.option("--device", default=None)
    @json_option
    @click.pass_obj
    @handle_errors
    def probe(obj, anomaly_id, target, replacements, nla_name, auto, n_salient, max_new_tokens, device, as_json):
        """Counterfactual probes: does the anomaly's behaviour persist when the prompt changes?"""
        from forensics.cli._progress import RichProgress
        from forensics.nla.probe import run_probe

        _threads()
        with obj.open() as ws, RichProgress(err_console) as progress:
            res = run_probe(ws, anomaly_id, target, replacements=list(replacements), nla=nla_name, auto=auto,
                            n_salient=n_salient, max_new_tokens=max_new_tokens, device=device,
                            progress=progress)
        if as_json:
            emit_json(res)
            return
        from rich.table import Table

        t = Table(title=f"probes for anomaly {anomaly_id} (behaviour: {res.behaviour})")
        for c in ("variant", "reply lang", "persists", "reply", "explanation"):
            t.add_column(c, overflow="fold")
        for v in res.variants:
            t.add_row(v.variant, str(v.reply_lang), "yes" if v.behaviour_persists else "no",
                      (v.reply or "")[:60], (v.explanation or "")[:80])
        console.print(t)
        console.print(f"stored {len(res.variants)} rows in probes (probe_ids {res.variants[0].probe_id}.."
                      f"{res.variants[-1].probe_id})" if res.variants else "no variants")
