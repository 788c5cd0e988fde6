"""``python -m benchmarks``: the four workloads on prismq-queue, the raw loops and the peers."""

from __future__ import annotations

from pathlib import Path

import click

from benchmarks import report, runner
from benchmarks.systems import SYSTEMS

WORKLOADS = ("W1", "W2", "W3", "W4")
BACKENDS = ("sqlite", "postgresql")
DOCS_PAGE = runner.ROOT / "docs" / "benchmarks.md"
IMG_DIR = runner.ROOT / "docs" / "img"


def _csv(allowed: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
        if value is None:
            return None
        items = [v.strip() for v in value.split(",") if v.strip()]
        if allowed is not None:
            bad = [v for v in items if v not in allowed]
            if bad:
                raise click.BadParameter(f"{', '.join(bad)} (choose from {', '.join(allowed)})")
        return items

    return convert


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Tiny sizes and 1 rep: a smoke test (under a minute).")
@click.option("--reps", type=click.IntRange(1), default=3, show_default=True)
@click.option(
    "--workloads",
    default=",".join(WORKLOADS),
    show_default=True,
    callback=_csv(WORKLOADS),
    help="Comma-separated subset of W1,W2,W3,W4.",
)
@click.option(
    "--backends",
    default=",".join(BACKENDS),
    show_default=True,
    callback=_csv(BACKENDS),
    help="Comma-separated subset of sqlite,postgresql.",
)
@click.option(
    "--systems",
    default=None,
    callback=_csv(tuple(SYSTEMS)),
    help="Comma-separated systems (default: prismq-queue, the raw loops and every installed peer).",
)
@click.option(
    "--pg-url",
    default=None,
    help=f"PostgreSQL URL (default: ${runner.PG_ENV}); the run works in a schema of its own.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Results JSON (default benchmarks/results/latest.json; --quick: under raw/).",
)
@click.option(
    "--variants/--no-variants",
    default=True,
    show_default=True,
    help="Also measure the extra worker settings (prismq --concurrency 8, huey poll1ms).",
)
@click.option(
    "--plots/--no-plots",
    default=None,
    help="Draw docs/img/bench_*.png (default: on for a full run).",
)
@click.option(
    "--docs/--no-docs",
    "update_docs",
    default=None,
    help="Rewrite the results section of docs/benchmarks.md (default: on for a full "
    "run to the default --out).",
)
@click.option(
    "--quiet-gate",
    type=float,
    default=25.0,
    show_default=True,
    help="Other tenants' CPU %% above which a rep counts as noisy.",
)
@click.option(
    "--quiet-max-wait",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait before a job for the machine to go quiet.",
)
@click.option(
    "--quiet-wait-budget",
    type=float,
    default=300.0,
    show_default=True,
    help="Total seconds a run may spend waiting for quiet.",
)
@click.option("--no-progress", is_flag=True, help="No progress output on stderr.")
def main(
    quick: bool,
    reps: int,
    workloads: list[str],
    backends: list[str],
    systems: list[str] | None,
    pg_url: str | None,
    out: Path | None,
    variants: bool,
    plots: bool | None,
    update_docs: bool | None,
    quiet_gate: float,
    quiet_max_wait: float,
    quiet_wait_budget: float,
    no_progress: bool,
) -> None:
    """Run the benchmark and write JSON and markdown results (see docs/benchmarks.md)."""
    opts = runner.Options(
        reps=reps,
        workloads=workloads,
        backends=backends,
        systems=systems,
        quick=quick,
        pg_url=pg_url,
        out=out,
        quiet_gate=quiet_gate,
        quiet_max_wait=quiet_max_wait,
        quiet_wait_budget=quiet_wait_budget,
        variants=variants,
        progress=not no_progress,
    )
    doc = runner.run(opts)
    out_path = Path(doc.pop("_out"))
    full_default_run = not quick and out is None
    if plots if plots is not None else full_default_run:
        from benchmarks import plot

        for path in plot.plot_all(doc, IMG_DIR):
            click.echo(f"wrote {runner._rel(path)}", err=True)
    if update_docs if update_docs is not None else full_default_run:
        report.update_docs(doc, DOCS_PAGE, runner._rel(out_path))
        click.echo(f"updated {runner._rel(DOCS_PAGE)}", err=True)
    click.echo(report.render_markdown(doc))
    click.echo(
        f"wrote {runner._rel(out_path)} and {runner._rel(out_path.with_suffix('.md'))}", err=True
    )


if __name__ == "__main__":
    main()
