"""``spine demo [--workdir DIR] [--studies N] [--test-studies M] [--epochs E] [--quick]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Folder for everything the demo writes.")] = Path(
        "demo_work"),
    studies: Annotated[int | None, typer.Option("--studies", min=5, help="Synthetic training studies "
                                                "(default 80; --quick: 6).")] = None,
    test_studies: Annotated[int | None, typer.Option("--test-studies", min=1, help="Unseen studies to evaluate "
                                                     "on (default 40; --quick: 2).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic studies.")] = 0,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", min=1, help="Epochs of every model (default: per model, sized for 15 minutes on 2 cores).")] = None,
    matrix: Annotated[int | None, typer.Option("--matrix", min=32, max=1024, help="In-plane matrix of every "
                                               "synthetic series (default 192; --quick: 128).")] = None,
    master: Annotated[bool, typer.Option("--master/--no-master", help="Also train the master model.")] = True,
    quick: Annotated[bool, typer.Option(
        "--quick", help="The smallest run of every step (6 + 2 studies, 1 epoch, 128 px): a smoke check.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Processes for synth and ingest "
                                                "(default: all cores).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if available).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars of training.")] = False,
) -> None:
    """The whole job on synthetic studies: synth -> ingest -> train -> locate -> classify -> score -> pictures.

    Prints each step's equivalent `spine ...` command (to repeat it on real data), leaves the run
    directories under DIR/runs/, the summary in DIR/summary.json and pictures in DIR/pictures/.
    """
    from rich.console import Console
    from rich.table import Table

    from spinemodels.demo import DemoSettings, run_demo

    from .outputs import output_dir

    output_dir(workdir, "--workdir")
    console = Console()
    changes = {k: v for k, v in {"studies": studies, "test_studies": test_studies, "epochs": epochs,
                                   "matrix": matrix}.items()
               if v is not None}
    common = {"seed": seed, "master": master, "workers": workers, "device": device, "progress": progress}
    settings = (DemoSettings.quick(workdir, **changes, **common) if quick
                else DemoSettings(workdir=workdir, **changes, **common))

    def announce(name: str, command: str) -> None:
        console.print(f"[bold cyan]{name}[/bold cyan]  [dim]$[/dim] {command}", soft_wrap=True, highlight=False)

    def finished(record) -> None:
        console.print(f"  [green]done[/green] in {record.seconds:.1f} s ({record.cpu_seconds:.1f} s CPU)",
                      highlight=False)

    result = run_demo(settings, announce, finished)
    summary = result.summary
    table = Table(title=f"{summary['test_studies']} unseen test studies, models trained on "
                        f"{summary['train_studies']} ({summary['device']})")
    table.add_column("metric part (weighted log loss)")
    table.add_column("models", justify="right")
    table.add_column("class priors", justify="right")
    table.add_column("models / priors", justify="right")
    for key, value in summary["scores"]["model"].items():
        prior = summary["scores"]["class_priors"][key]
        table.add_row(key, f"{value:.4f}", f"{prior:.4f}", f"{value / prior:.2f}" if prior > 0 else "")
    table.add_row("most probable class correct", f"{summary['scores']['argmax_accuracy']:.1%}", "", "")
    console.print(table)
    located = Table(title="located points against the truth (3D distance)")
    located.add_column("group")
    for column in ("median mm", "p95 mm", "within 5 mm"):
        located.add_column(column, justify="right")
    loc = summary["localisation"]
    for group in ("spinal", "foraminal", "subarticular"):
        located.add_row(group, f"{loc[f'{group}_median_mm']:.1f}", f"{loc[f'{group}_p95_mm']:.1f}",
                        f"{loc[f'{group}_within_5mm']:.0%}")
    console.print(located)
    timings = Table(title=f"timings (total {summary['total_s'] / 60:.1f} min)")
    timings.add_column("step")
    timings.add_column("wall s", justify="right")
    timings.add_column("CPU s", justify="right")
    for name, seconds in summary["timings_s"].items():
        timings.add_row(name, f"{seconds:.1f}", f"{summary['cpu_s'][name]:.1f}")
    console.print(timings)
    console.print(f"summary: {result.workdir / 'summary.json'}; runs: {result.workdir / 'runs'}; "
                  f"pictures: {', '.join(summary['files']['pictures'])}", highlight=False)
