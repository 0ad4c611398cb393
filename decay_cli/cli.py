"""The ``decay`` command line (typer): run a worker, replay an event log, follow the alerts,
ask what a user is interested in, run the demo, a local broker, training and benchmarks.

Heavy imports happen inside the commands, so ``decay --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

HELP = (
    "decay: a live interest score per user that decays while the user is silent, and an "
    "alert when it has decayed far enough to act on. Run a worker, replay an event log, "
    "follow the alerts, ask what a user is interested in, or run the whole demo."
)
app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP)
kafka_app = typer.Typer(
    no_args_is_help=True,
    help="The local Apache Kafka broker (KRaft), configured as deploy/kafka/kafka.sh is: "
    "DECAY_KAFKA_PORT, DECAY_KAFKA_CONTROLLER_PORT, DECAY_KAFKA_DIR...",
)
app.add_typer(kafka_app, name="kafka")
log = logging.getLogger(__name__)


@app.callback()
def _check_environment() -> None:
    # A DECAY_* variable that nothing reads is a typo, silently ignored otherwise.
    from decay.settings import unknown_variables

    for line in unknown_variables(os.environ):
        log.warning("%s", line)


def _mount_training() -> None:
    """train / evaluate / export, when the training package is installed (it imports no
    TensorFlow until a command runs)."""
    try:
        from training.cli import app as training_app
    except ImportError:  # a worker-only install
        return
    app.add_typer(training_app)


_mount_training()

Bootstrap = Annotated[str | None, typer.Option(help="Kafka bootstrap servers")]


def _fail(command: str, message: str) -> NoReturn:
    """An ordinary mistake (a setting, a file, no broker): one error line, exit 2."""
    logging.getLogger(f"decay.{command}").error("%s", message)
    raise typer.Exit(2)


def _validated(model: Any, command: str, **overrides: Any) -> Any:
    """``model`` (a settings class) from the environment and the CLI options given; a bad
    value is named by its environment variable (or option) in one error line."""
    from pydantic import ValidationError

    from decay.settings import problems

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return model(**given)
    except ValidationError as exc:
        _fail(command, "invalid setting: " + "; ".join(problems(model, exc, given)))


def _settings(command: str, **overrides: Any) -> Any:
    from decay.settings import Settings

    return _validated(Settings, command, **overrides)


def _connected(settings: Any, command: str) -> Any:
    """``settings`` once a broker answered and accepted the credentials; else one error line
    and exit 2. Checked before any client starts: aiokafka clients print a traceback when no
    broker answers, and log a refused login and retry forever."""
    from decay_kafka.kafka_client import KafkaAuthError, KafkaUnreachableError, check_connection

    try:
        asyncio.run(check_connection(settings))
    except KafkaUnreachableError as exc:
        _fail(command, f"{exc} (DECAY_BOOTSTRAP or --bootstrap)")
    except KafkaAuthError as exc:
        _fail(command, f"{exc}; not starting the {command}")
    return settings


def _broker() -> Any:
    from decay.settings import LocalKafka
    from decay_kafka.kafka_broker import KafkaBroker, find_repo_root

    local = _validated(LocalKafka, "kafka")
    return KafkaBroker(
        find_repo_root(),
        local.dir,
        local.port,
        local.controller_port,
        extra_props=local.extra_props.splitlines(),
        format_args=local.format_args.split(),
        start_timeout=local.start_timeout,
    )


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the broker (fetching the jars with Maven the first time)."""
    from decay_kafka.kafka_broker import KafkaBrokerError

    broker = _broker()
    try:
        broker.start()
    except KafkaBrokerError as exc:  # kafka.sh's words: a port in use, no Java, the log tail
        _fail("kafka", str(exc).rstrip())
    typer.echo(f"kafka running on {broker.bootstrap}")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker."""
    _broker().stop()


@kafka_app.command("status")
def kafka_status() -> None:
    """Exit 0 when the broker serves clients."""
    broker = _broker()
    if not broker.is_running():
        typer.echo("kafka is not running")
        raise typer.Exit(1)
    typer.echo(f"kafka running on {broker.bootstrap}")


@app.command("settings")
def show_settings() -> None:
    """Every setting as a markdown table: name, default, environment variable, meaning."""
    from decay.settings import Settings

    typer.echo("| setting | default | environment | meaning |\n| --- | --- | --- | --- |")
    for name, info in Settings.model_fields.items():
        default = "" if info.default is None else info.default
        typer.echo(f"| {name} | `{default}` | `DECAY_{name.upper()}` | {info.description} |")


@app.command()
def topics(bootstrap: Bootstrap = None, partitions: int | None = None) -> None:
    """Create the events, alerts and dead-letter topics when missing."""
    from decay_kafka.topics import ensure_topics

    settings = _settings("topics", bootstrap=bootstrap, partitions=partitions)
    _connected(settings, "topics")
    created = asyncio.run(ensure_topics(settings))
    typer.echo(f"created: {', '.join(created) or 'none (all exist)'}")


@app.command()
def worker(
    bootstrap: Bootstrap = None,
    web_port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="state directory")] = None,
) -> None:
    """Run a stream worker until SIGTERM / Ctrl-C. Every setting is an environment variable
    too (DECAY_*): `decay settings` lists them. Exits 2, before it touches Kafka, on a bad
    setting or a model it cannot load; exits 2 when no broker answers or Kafka refuses the
    credentials."""
    from faust import Worker

    from decay_kafka.topics import ensure_topics
    from stream_app.app import create_app
    from stream_app.rollout import ModelUnavailableError, startup_scorer

    settings = _settings("worker", bootstrap=bootstrap, web_port=web_port, data_dir=data_dir)
    try:
        scorer = startup_scorer(settings)
    except ModelUnavailableError as exc:
        _fail("worker", f"{exc}; not starting the worker")
    _connected(settings, "worker")
    asyncio.run(ensure_topics(settings))
    built = create_app(settings, scorer)
    runner = Worker(built.app, loglevel=settings.log_level)
    # Faust's console spinner, on at levels >= WARN, lowers the root logger to DEBUG so that
    # it spins on every record: every library debug message then gets built. No spinner.
    runner.spinner = None
    runner.execute_from_commandline()


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="events file: .jsonl, .csv or .parquet")],
    users: int = 2000,
    days: float = 60.0,
    seed: int = 7,
    truth: Annotated[Path | None, typer.Option(help="ground-truth file (.csv/.parquet)")] = None,
) -> None:
    """Write a synthetic e-commerce event log (fixed seed) and its ground truth."""
    from decay.eventlog import write_events
    from training.simulate import simulate as run

    log = run(n_users=users, days=days, seed=seed)
    write_events(log.events, out)
    if truth is not None:
        if truth.suffix == ".parquet":
            log.truth.to_parquet(truth)
        else:
            log.truth.to_csv(truth, index=False)
    typer.echo(f"{len(log.events)} events of {users} users over {days} days -> {out}")


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="event log (.jsonl/.csv/.parquet) or 'cdnow'")],
    bootstrap: Bootstrap = None,
    topic: Annotated[str | None, typer.Option(help="target topic")] = None,
    rate: Annotated[float, typer.Option(help="events per second; 0: as fast as possible")] = 0,
) -> None:
    """Produce an event log to the events topic, in file order, keyed by user id."""
    from decay.eventlog import EventLogError
    from decay_cli.replay import check_source, replay_file

    settings = _settings("replay", bootstrap=bootstrap)
    try:
        check_source(file)
    except (OSError, ValueError) as exc:
        _fail("replay", f"{exc}; nothing sent")
    _connected(settings, "replay")
    try:
        n = asyncio.run(replay_file(file, settings, topic or settings.events_topic, rate))
    except EventLogError as exc:
        _fail("replay", str(exc))
    typer.echo(f"{n} events sent")


@app.command()
def alerts(
    bootstrap: Bootstrap = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON alert per line")] = False,
    from_beginning: bool = True,
    max_alerts: Annotated[int, typer.Option(help="stop after this many; 0: never")] = 0,
    idle_timeout: Annotated[float, typer.Option(help="stop after this long idle; 0: never")] = 0,
) -> None:
    """Print alerts as they arrive."""
    from decay_cli.alert_feed import follow_alerts, format_alert

    settings = _connected(_settings("alerts", bootstrap=bootstrap), "alerts")

    def show(alert: dict[str, Any]) -> None:
        typer.echo(json.dumps(alert) if as_json else format_alert(alert))

    asyncio.run(
        follow_alerts(
            settings,
            settings.alerts_topic,
            show,
            from_beginning=from_beginning,
            max_alerts=max_alerts,
            idle_timeout=idle_timeout,
        )
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="throughput or latency (bench/NAME.py)")],
) -> None:
    """Run a benchmark of bench/ (by hand; its options follow, e.g. --json FILE)."""
    import runpy

    from decay_kafka.kafka_broker import find_repo_root

    script = find_repo_root() / "bench" / f"{name}.py"
    if not script.is_file():
        raise typer.BadParameter(f"no benchmark {script}")
    sys.argv = [str(script), *ctx.args]
    sys.path.insert(0, str(script.parent.parent))  # bench/ imports its siblings as bench.*
    runpy.run_path(str(script), run_name="__main__")


@app.command()
def user(
    user_id: str,
    url: Annotated[str, typer.Option(help="any worker; it routes to the owner")] = (
        "http://127.0.0.1:6066"
    ),
) -> None:
    """What user ID is interested in right now (asks a worker's /users/{id})."""
    import urllib.error
    import urllib.parse
    import urllib.request

    target = f"{url.rstrip('/')}/users/{urllib.parse.quote(user_id, safe='')}"
    try:
        with urllib.request.urlopen(target, timeout=10) as response:
            typer.echo(json.dumps(json.loads(response.read()), indent=2))
    except urllib.error.HTTPError as exc:
        typer.echo(f"{exc.code}: {exc.read().decode(errors='replace')}", err=True)
        raise typer.Exit(1) from exc
    except urllib.error.URLError as exc:
        typer.echo(f"cannot reach a worker at {url}: {exc.reason}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def demo(
    data: Annotated[str, typer.Option(help="cdnow (the real purchase log) or sim")] = "cdnow",
    users: Annotated[int, typer.Option(help="sim: users")] = 2000,
    days: Annotated[float, typer.Option(help="sim: days")] = 60.0,
    seed: Annotated[int, typer.Option(help="sim: seed")] = 7,
    horizon_days: Annotated[
        float | None, typer.Option(help="'stayed away' horizon; default 90 (cdnow), 14 (sim)")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="model worker's model (default: cdnow-lapse on cdnow)")
    ] = None,
) -> None:
    """Broker, model and baseline workers, a log replayed at full speed, alerts, a summary."""
    from decay_cli.demo import run_demo

    if data not in ("cdnow", "sim"):
        raise typer.BadParameter("--data must be cdnow or sim")
    code = run_demo(data, users, days, seed, horizon_days, broker=_broker(), model=model)  # type: ignore[arg-type]
    raise typer.Exit(code)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aiokafka narrates every group join at INFO; the CLI's own messages are what matter here.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
