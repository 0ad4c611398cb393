"""Training commands (typer): train, evaluate, export. TensorFlow is imported inside them.

Mount in the main CLI with ``app.add_typer(training.cli.app)`` (commands at top level), or run
``python -m training.cli ...``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from training.evaluate import CDNOW_MODELS

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
evaluate_app = typer.Typer(invoke_without_command=True, help="Score models against baselines.")
app.add_typer(evaluate_app, name="evaluate")

Arch = Annotated[str, typer.Option(help="lstm or gru")]


def _quiet_tensorflow() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


@app.command()
def train(
    events: Annotated[Path, typer.Option(help="event log (.jsonl/.csv/.parquet) or 'cdnow'")],
    out: Annotated[Path, typer.Option(help="model directory to write")],
    arch: Arch = "lstm",
    epochs: int = 15,
    max_examples: int = 60_000,
    units: int = 32,
    seed: int = 0,
    clean: Annotated[bool, typer.Option(help="clean the log first (report printed)")] = True,
    category_dims: Annotated[
        int,
        typer.Option(help="0: hashed category buckets (spec fs1); k: a k-d category space (fs2)"),
    ] = 0,
) -> None:
    """Train the hazard model on an event log (time-based validation split)."""
    _quiet_tensorflow()
    from training.data import clean as clean_log
    from training.data import load_events
    from training.train import TrainConfig
    from training.train import train as run

    if arch not in ("lstm", "gru"):
        raise typer.BadParameter("arch must be lstm or gru")
    df = load_events(str(events) if str(events).startswith("cdnow") else events)
    if clean:
        df, _ = clean_log(df)
    cfg = TrainConfig(
        arch=arch, epochs=epochs, max_examples=max_examples, units=units, seed=seed, verbose=2
    )
    from decay.features import FeatureSpec, space_spec

    spec = space_spec(category_dims) if category_dims else FeatureSpec()
    result = run(df, out, spec=spec, config=cfg)
    typer.echo(json.dumps(result.summary, indent=2))


@evaluate_app.callback()
def evaluate(
    ctx: typer.Context,
    events: Annotated[Path | None, typer.Option(help="evaluate on this log (time split)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    models: Annotated[
        str,
        typer.Option(
            help="comma-separated: exp-decay,arima,bgnbd,pareto,lapse,lapse+pareto,lstm,gru"
        ),
    ] = "exp-decay,bgnbd,pareto,lapse,lapse+pareto,lstm",
    folds: Annotated[
        int, typer.Option(help="rolling-origin folds over the last 30% of the log (0: none)")
    ] = 3,
    epochs: Annotated[int, typer.Option(help="epochs of the neural models")] = 20,
    per_day: Annotated[
        bool, typer.Option(help="count active days (one event per user and day), as CDNOW")
    ] = True,
) -> None:
    """``evaluate --events FILE``: models vs baselines on a time split of a log, and a
    rolling-origin cross-validation (the neural models with a small config in the folds)."""
    if ctx.invoked_subcommand is not None:
        return
    if events is None:
        raise typer.BadParameter("give --events FILE, or use 'evaluate cdnow' / 'evaluate sim'")
    _quiet_tensorflow()
    import dataclasses

    from training.data import clean, load_events
    from training.evaluate_events import SMALL_LSTM, run_events
    from training.reports import markdown_table, write_report
    from training.train import TrainConfig

    df, _ = clean(load_events(events))
    report = run_events(
        df,
        models=_models(models),
        config=TrainConfig(cut_every_h=24.0, refit=True, verbose=0, epochs=epochs),
        folds=folds,
        fold_config=dataclasses.replace(SMALL_LSTM, epochs=min(epochs, SMALL_LSTM.epochs)),
        per_day=per_day,
    )
    typer.echo(markdown_table(report))
    if json_out is not None:
        write_report(report, json_out)


def _models(models: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in models.split(",") if m.strip())


@evaluate_app.command("sim")
def evaluate_sim(
    users: int = 2000,
    days: float = 30.0,
    seed: int = 0,
    models: Annotated[
        str, typer.Option(help="comma-separated: exp-decay,bgnbd,pareto,lstm,gru")
    ] = "exp-decay,bgnbd",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
) -> None:
    """Simulate a log, split it in time, score the models, and compare their dormancy alerts
    with the simulator's ground truth (user churned for good before the end of the holdout)."""
    _quiet_tensorflow()
    from training.evaluate_events import run_sim
    from training.reports import markdown_table, write_report

    report = run_sim(users, days, seed, models=_models(models))
    typer.echo(markdown_table(report))
    if json_out is not None:
        write_report(report, json_out)


@evaluate_app.command("cdnow")
def evaluate_cdnow(
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    plots: Annotated[Path | None, typer.Option(help="directory for PNG plots")] = None,
    models: Annotated[
        str,
        typer.Option(
            help="comma-separated: exp-decay,arima,bgnbd,pareto,lapse (LSTM-BTYD), lapse-exp, "
            "lapse-beta, lapse-gru, lapse+pareto (LSTM-BTYD mixed with Pareto/NBD), lstm, gru"
        ),
    ] = ",".join(CDNOW_MODELS),
    population: Annotated[
        str, typer.Option(help="sample (2,357 customers) or full (23,570)")
    ] = "sample",
    calibration_weeks: Annotated[int, typer.Option(help="weeks 1..N calibrate")] = 39,
    holdout_weeks: Annotated[int, typer.Option(help="the next M weeks are the holdout")] = 39,
    model_dir: Annotated[Path | None, typer.Option(help="keep the trained models here")] = None,
    validation: Annotated[
        bool,
        typer.Option(
            help="choose the lapse model's settings on splits inside weeks 1-39 "
            "(1-13/14-39, 1-20/21-39 and 1-26/27-39); never looks at the holdout"
        ),
    ] = False,
    candidates: Annotated[
        str | None,
        typer.Option(help="with --validation: comma-separated names of the grid (default: all)"),
    ] = None,
    seeds: Annotated[
        str, typer.Option(help="with --validation: comma-separated seeds of every candidate")
    ] = "0,1,2",
    validation_blend: Annotated[
        bool,
        typer.Option(
            help="choose the weight of LSTM-BTYD in its mixture with Pareto/NBD on the same "
            "splits inside weeks 1-39; never looks at the holdout"
        ),
    ] = False,
) -> None:
    """The CDNOW protocol of docs/design.md (default: the published cut): one markdown table, and
    JSON."""
    _quiet_tensorflow()
    from training.evaluate import run_cdnow
    from training.reports import markdown_table, write_report
    from training.splits import CdnowCut

    if validation:
        from training.validation import grid_of, validate, validation_table

        try:
            grid = grid_of(candidates)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--candidates") from None
        try:
            chosen_seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise typer.BadParameter(f"not integers: {seeds!r}", param_hint="--seeds") from None
        if not chosen_seeds:
            raise typer.BadParameter("names no seed", param_hint="--seeds")
        report = validate(grid, seeds=chosen_seeds)
        typer.echo(validation_table(report))
    elif validation_blend:
        from training.validation import blend_table, validate_blend

        report = validate_blend()
        typer.echo(blend_table(report))
    else:
        cut = CdnowCut(population, calibration_weeks, holdout_weeks)
        report = run_cdnow(models=_models(models), plots_dir=plots, model_dir=model_dir, cut=cut)
        typer.echo(markdown_table(report))
    if json_out is not None:
        write_report(report, json_out)
        typer.echo(f"report -> {json_out}")


# An option of both exports.
CardMetrics = Annotated[
    Path | None, typer.Option(help="evaluation JSON whose metrics go into the card")
]


def _evaluated(metrics: Path | None) -> dict[str, Any] | None:
    """The per-model metrics of an evaluation report, for a model card."""
    return json.loads(metrics.read_text()).get("models", {}) if metrics else None


@app.command()
def export(
    model: Annotated[Path, typer.Option(help="model directory from 'train'")],
    out: Annotated[Path, typer.Option(help="ONNX file to write (card.json goes next to it)")],
    metrics: CardMetrics = None,
) -> None:
    """Export to ONNX (LSTM op with sequence_lens), check parity with TensorFlow, add the card."""
    _quiet_tensorflow()
    from training.export import export as run

    holdout = _evaluated(metrics)
    card, parity = run(model, out, holdout_metrics=holdout)
    typer.echo(
        f"{card.model_version}: parity max abs {parity.max_abs:.2e} on {parity.n} inputs; "
        f"{out.stat().st_size / 1024:.0f} KiB"
    )


@app.command("train-lapse")
def train_lapse(
    events: Annotated[str, typer.Option(help="event log, or cdnow / cdnow-sample")],
    out: Annotated[Path, typer.Option(help="model directory to write")],
    until: Annotated[
        str | None, typer.Option(help="train on events before this time (ISO); default: all")
    ] = None,
    seed: int = 0,
) -> None:
    """Train the lapse model (LSTM + buy-till-you-die heads) with the settings chosen on the
    CDNOW validation splits: weeks as the unit for CDNOW, days for other logs (one event per
    user and day, as the evaluation counts them)."""
    _quiet_tensorflow()
    import dataclasses

    import pandas as pd

    from decay.features import FeatureSpec
    from training.data import clean, collapse_same_day, load_events
    from training.evaluate import CDNOW_LAPSE
    from training.evaluate_events import EVENTS_LAPSE
    from training.lapse import fit
    from training.lapse_step import save

    cdnow = events.startswith("cdnow")
    df = load_events(events) if cdnow else clean(load_events(Path(events)))[0]
    df = collapse_same_day(df)
    end = int(df["ts"].max()) + 1
    if until is not None:
        end = int(pd.Timestamp(until, tz="UTC").value // 10**6)
        df = df[df["ts"] < end]
    cfg = dataclasses.replace(CDNOW_LAPSE if cdnow else EVENTS_LAPSE, seed=seed)
    spec = FeatureSpec(horizon_h=39 * 168.0 if cdnow else 7 * 24.0)
    result = fit(df, end - 1, spec, cfg)
    save(result, out)
    typer.echo(f"lapse model -> {out} ({result.summary['train_seconds']} s)")


@app.command("export-step")
def export_step(
    model: Annotated[Path, typer.Option(help="model directory from 'train-lapse'")],
    out: Annotated[Path, typer.Option(help="ONNX file to write (<name>.card.json next to it)")],
    metrics: CardMetrics = None,
) -> None:
    """Export the lapse model's incremental step (one event + (h, c, counters)) to ONNX."""
    _quiet_tensorflow()
    from training.lapse_step import export, load

    holdout = _evaluated(metrics)
    card = export(load(model), out, holdout_metrics=holdout)
    typer.echo(f"{card.model_version}: {out} ({out.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
