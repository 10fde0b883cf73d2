"""``forensics verify``: retrain without a triage cluster (and without random rows) and compare
the anomaly's behaviour rate on probe prompts (docs/verify.md)."""

from __future__ import annotations

import click

from forensics.cli._common import console, emit_json, err_console, handle_errors, json_option


def register(main: click.Group) -> None:
    @main.command("verify")
    @click.argument("run_id", type=int)
    @click.option("--cluster", "cluster_id", type=int, default=None,
                  help="Cluster of the run to verify (default: the top-ranked one).")
    @click.option("--target", required=True, type=click.Path(), help="The trained target model directory.")
    @click.option("--train-config", required=True, type=click.Path(),
                  help="JSON or TOML: init (weights before training), steps, batch_size, lr, max_len, seed.")
    @click.option("--seeds", type=click.IntRange(1, 50), default=3, show_default=True,
                  help="Random removals of the cluster's size (the control).")
    @click.option("--probes", "probe_file", type=click.Path(), default=None,
                  help="Extra probe prompts: a text file (one per line) or JSONL with a 'prompt' field.")
    @click.option("--stored-probes/--no-stored-probes", default=True, show_default=True,
                  help="Also probe with the anomaly's stored probe variants (forensics probe).")
    @click.option("--max-params", type=int, default=None,
                  help="Retrain here only up to this many parameters (default 20,000,000).")
    @click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
                  help="Retrains run at once, in separate processes.")
    @click.option("--external", is_flag=True, help="Do not retrain here: write the retraining script and data.")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                  help="Where --external (or a too-large target) writes its files.")
    @json_option
    @click.pass_obj
    @handle_errors
    def verify_cmd(obj, run_id, cluster_id, target, train_config, seeds, probe_file, stored_probes, max_params,
                   workers, external, out_dir, as_json):
        """Does a cluster cause the anomaly? Retrain without it vs without random rows."""
        from forensics.cli._progress import RichProgress
        from forensics.verify.core import VerifyParams, read_probe_file, verify

        p = VerifyParams(seeds=seeds, use_stored_probes=stored_probes, workers=workers)
        if max_params is not None:
            p.max_params = max_params
        extra = read_probe_file(probe_file) if probe_file else []
        with obj.open() as ws, RichProgress(err_console) as progress:
            res = verify(ws, run_id, target, train_config, cluster_id=cluster_id, probes=extra, params=p,
                         external=external, out_dir=out_dir, progress=progress)
        if as_json:
            emit_json(res.to_json())
            return
        d = res.detail
        if res.mode == "external":
            est = d["cost_estimate"]
            console.print(f"not retrained here ({d['reason']}).\nCost estimate: {est['retrains']} retrains, "
                          f"{est['flops']:.3g} FLOPs, ~{est['hours_at_flops_per_s']:.3g} h at "
                          f"{est['flops_per_s_assumed']:.3g} FLOP/s.\nWrote {d['written']['dir']}: "
                          + ", ".join(d["written"]["files"]) + "\nRun retrain.py there (or your trainer on "
                          "train-*.jsonl with train_config.json).")
            return

        def ci(x):
            return f"[{x[0]:.2f}, {x[1]:.2f}]"

        console.print(f"verification {res.verification_id}: run {res.run_id} cluster {res.cluster_id} "
                      f"({res.removed_rows} rows), behaviour: {res.behaviour}, {res.probes} probe prompts")
        console.print(f"  trained target      {res.rate_trained:.2f} {ci(d['ci_trained'])}")
        console.print(f"  without the cluster {res.rate_without:.2f} {ci(d['ci_without'])}")
        console.print(f"  without random rows {res.rate_random:.2f} {ci(d['ci_random'])} "
                      f"(per seed {', '.join(f'{x:.2f}' for x in d['rates_random'])})")
        console.print(f"  effect {res.effect:+.2f}, Cohen's h {d['cohens_h']:.2f}: verdict [bold]{res.verdict}[/] "
                      f"({d['seconds_per_retrain']:.0f} s per retrain)", markup=True)
