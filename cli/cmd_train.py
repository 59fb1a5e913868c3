"""``spine train CONFIG --data OUT.zarr --out RUN_DIR [--fold K] [--set key=value ...]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    config: Annotated[str, typer.Argument(
        help="Model config: a YAML file, or a packaged one as pkg:NAME, e.g. pkg:cpu/keypoints "
             "(pkg:keypoints, pkg:grade_spinal, ...: the reference settings; pkg:cpu/...: small CPU versions).")],
    data: Annotated[str, typer.Option("--data", help="Store written by `spine ingest` (training split): a folder or a URL.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory: config, folds, weights, metrics, oof.")],
    fold: Annotated[int | None, typer.Option("--fold", help="Train only this fold (default: train.folds).")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config value, e.g. --set optim.lr=3e-4 (repeatable).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue each fold from its last.pt.")] = False,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if available).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Train one model of the pipeline (one per fold); several GPUs: `torchrun --nproc-per-node N -m spine_cli.app train ...`."""
    from spinedata.store.urls import is_url
    from spinemodels.catalog import load_config
    from spinemodels.training import train as run_training

    from .outputs import output_dir

    if not is_url(data) and not Path(data).exists():  # a URL is checked when the store is opened
        raise FileNotFoundError(f"store {data} not found; write one with `spine ingest`")
    output_dir(out, hint="name a new folder or a run directory")
    cfg = load_config(config, overrides or [])
    run = run_training(cfg, data, out, fold=fold, resume=resume, progress=progress, device=device)
    folds = run.trained_folds()
    typer.echo(f"{cfg.task}: trained folds {folds} in {run.path}")
    for k in folds:
        metrics = run.metrics(k)
        best = metrics.loc[metrics["val_loss"].idxmin()]
        extras = ", ".join(f"{c} {best[c]:.4g}" for c in metrics.columns
                           if c not in ("epoch", "train_loss", "val_loss", "lr", "seconds", "samples_per_s"))
        typer.echo(f"  fold {k}: best epoch {int(best['epoch'])}, val_loss {best['val_loss']:.4f}"
                   + (f", {extras}" if extras else ""))
