"""All configuration, in one frozen typed object. The environment is read here and only here.

Every field can be set as ``DECAY_<NAME>`` (for example ``DECAY_BOOTSTRAP=127.0.0.1:9092``);
the CLI passes its options as keyword arguments, which win over the environment.
:class:`LocalKafka` is the local broker of ``deploy/kafka/kafka.sh``, configured by the
script's own ``DECAY_KAFKA_*`` variables. :func:`unknown_variables` finds the ``DECAY_*``
variables that neither reads (typos), :func:`problems` words a validation error in terms of
the variables (or CLI options) that were given.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_THRESHOLD = 0.2


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error must not echo the input, which holds secrets.
    model_config = SettingsConfigDict(
        env_prefix="DECAY_", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    bootstrap: str = Field(DEFAULT_BOOTSTRAP, description="Kafka bootstrap servers")
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients talk to Kafka: in the clear, SASL, SASL over TLS"
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with SASL_PLAINTEXT / SASL_SSL)"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_cafile: Path | None = Field(
        None, description="SASL_SSL: CA certificate(s) that sign the broker's (default: system)"
    )
    app_id: str = Field("decay", description="Faust app id: consumer group and topic prefix")
    group_instance_id: str | None = Field(
        None,
        description="static group membership: a worker restarted under the same id (unique "
        "per worker, with the same web address) takes its partitions back at once, without "
        "waiting out the dead one's session; a stopped one keeps them for session_timeout_s",
    )
    events_topic: str = Field("events", description="topic of behaviour events")
    alerts_topic: str = Field("alerts", description="topic the alerts are published on")
    dead_letter_topic: str = Field("events-dlq", description="topic of rejected messages")
    partitions: int = Field(4, ge=1, description="partitions of the topics the app creates")
    data_dir: Path = Field(Path("var/worker"), description="RocksDB state and Faust data")
    # Faust's RocksDB defaults (64 MB write buffers, 2 GB block cache, per partition) let a
    # worker's memory grow by hundreds of MB before the first flush (bench/soak.py).
    rocksdb_write_buffer_mb: int = Field(
        8, ge=1, le=1024, description="RocksDB memtable size per partition (MB)"
    )
    rocksdb_cache_mb: int = Field(
        64,
        ge=2,
        le=8192,
        description="RocksDB memory of the state table, all partitions together: one block"
        " cache (MB), memtables charged to it up to half",
    )
    web_host: str = Field("127.0.0.1", description="HTTP bind address (loopback by default)")
    web_advertised_host: str | None = Field(
        None,
        description="host other workers reach this one at, for /users routing (default web_host)",
    )
    web_port: int = Field(6066, ge=0, le=65535, description="HTTP port (/metrics, /users)")
    batch_max: int = Field(2000, ge=1, description="most events in one micro-batch")
    batch_within_s: float = Field(
        0.02,
        gt=0,
        description="a batch is cut once its oldest event has waited this long since its fetch"
        " (or at batch_max)",
    )
    window_events: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="raw events kept per user (default: what the scorer reads: 64 for the "
        "window model and the baseline, 10 for the lapse model, whose state carries the "
        "history: the last 10 events are what alerts' reasons read)",
    )
    grace_s: float = Field(3600.0, ge=0, description="event-time grace before the watermark")
    threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="interest below this is dormancy (default: the lapse model card's serving "
        f"threshold, else {DEFAULT_THRESHOLD})",
    )
    interest_horizon_days: float | None = Field(
        None,
        gt=0,
        le=3650,
        description="lapse model: interest is P(an event within this many days) (default: the "
        "card's serving horizon, else the horizon it was trained for)",
    )
    half_life_hours: float = Field(
        72.0, gt=0, description="half-life of the exponential-decay baseline scorer"
    )
    live: bool = Field(False, description="advance idle partitions' clocks with the wall clock")
    idle_s: float = Field(30.0, gt=0, description="live mode: idle time before the clock moves")
    commit_interval_s: float = Field(1.0, gt=0, description="offset commit interval")
    exactly_once: bool = Field(
        False,
        description="alerts, dead letters and offsets in one transaction per partition and "
        "batch (subscribers read with isolation.level=read_committed)",
    )
    session_timeout_s: float = Field(
        30.0, gt=0, description="consumer session timeout: how soon a dead worker's partitions move"
    )
    log_level: str = Field("info", description="worker log level")
    scorer: Literal["onnx", "baseline"] = Field(
        "onnx", description="the LSTM exported to ONNX, or the exponential-decay baseline"
    )
    model_path: Path | None = Field(
        None, description="model.onnx to serve (default: the model shipped in stream_app/models)"
    )
    model_dir: Path | None = Field(
        None, description="watched directory: the newest *.onnx there is rolled out live"
    )
    model_poll_s: float = Field(5.0, gt=0, description="how often model_dir is looked at")
    erase_topic: str = Field("erase", description="user ids whose state is to be erased")
    repartition_topic: str | None = Field(
        None,
        description="where events that came on a partition not their user's own go on to "
        "it (default: the events topic's name + '-repartition')",
    )
    erase_hold_days: float = Field(
        7.0,
        gt=0,
        description="how long an erased user's events produced before the erase request are "
        "still dropped when they arrive late (days of record time)",
    )

    @property
    def dormancy_threshold(self) -> float:
        """The threshold of a scorer that brings none of its own."""
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold

    @property
    def repartition(self) -> str:
        return self.repartition_topic or f"{self.events_topic}-repartition"

    scores_topic: str | None = Field(None, description="optional topic of score changes")
    score_min_change: float = Field(
        0.1, ge=0, description="publish a score when it moved by more than this (0: always)"
    )
    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key: when set, user ids are pseudonymised at ingestion"
    )
    state_ttl_days: float = Field(
        0.0, ge=0, description="delete users silent this long (event time); 0: keep"
    )
    ttl_sweep_s: float = Field(600.0, gt=0, description="how often expired users are swept")
    category_min_peak: float = Field(
        0.3,
        gt=0,
        le=1,
        description="share of the user's sessions that makes a category strong for them",
    )
    category_min_silence_days: float = Field(
        7.0, ge=0, description="no category_decay before the user is this long silent in it"
    )
    category_half_life_days: float = Field(
        14.0,
        gt=0,
        description="half-life of the decayed per-category activity (category_decay's test)",
    )

    trend_half_life_days: float = Field(
        7.0,
        gt=0,
        le=365,
        description="half-life of the per-category interest summed over users (/categories)",
    )
    trend_max_categories: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="categories tracked per partition for /categories; events of more are "
        "counted as untracked",
    )
    trend_metric_top: int = Field(
        10, ge=0, le=100, description="categories of highest interest exported as a gauge"
    )

    @model_validator(mode="after")
    def _credentials_with_sasl(self) -> Settings:
        if self.security_protocol != "PLAINTEXT" and (
            not self.sasl_username or self.sasl_password is None
        ):
            raise ValueError(
                f"security_protocol={self.security_protocol} (DECAY_SECURITY_PROTOCOL) needs "
                "sasl_username and sasl_password (DECAY_SASL_USERNAME, DECAY_SASL_PASSWORD)"
            )
        return self


class LocalKafka(BaseSettings):
    """The local broker as ``decay kafka`` drives it: kafka.sh's variables and defaults."""

    model_config = SettingsConfigDict(env_prefix="DECAY_KAFKA_", frozen=True)

    dir: Path | None = Field(None, description="data dir (default: var/kafka in the repo)")
    port: int = Field(19092, ge=1, le=65535, description="PLAINTEXT client port")
    controller_port: int = Field(19093, ge=1, le=65535, description="KRaft controller port")
    start_timeout: int = Field(60, gt=0, description="seconds to wait for the broker")
    extra_props: str = Field("", description="extra lines appended to server.properties")
    format_args: str = Field("", description="extra arguments of the storage format")


# Read by kafka.sh itself from the environment it inherits; Python passes them through.
SCRIPT_VARIABLES: Final = frozenset(
    {"DECAY_KAFKA_HEAP_OPTS", "DECAY_KAFKA_TOOL_HEAP_OPTS", "DECAY_KAFKA_STOP_TIMEOUT"}
)


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable of ``model``'s ``field``, e.g. ``DECAY_THRESHOLD``."""
    return f"{model.model_config.get('env_prefix', '')}{field}".upper()


def known_variables() -> frozenset[str]:
    """Every ``DECAY_*`` environment variable something in this project reads."""
    return frozenset(
        {env_name(Settings, f) for f in Settings.model_fields}
        | {env_name(LocalKafka, f) for f in LocalKafka.model_fields}
        | SCRIPT_VARIABLES
    )


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line for each ``DECAY_*`` variable of ``environ`` that nothing reads, with the
    nearest known name when there is a close one (a typo is otherwise silently ignored)."""
    known = known_variables()
    lines = []
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings matches names case-insensitively
        if not upper.startswith("DECAY_") or upper in known:
            continue
        near = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        lines.append(
            f"unknown environment variable {name} ignored"
            + (f" (did you mean {near[0]}?)" if near else "")
        )
    return lines


def problems(
    model: type[BaseSettings], error: ValidationError, options: Collection[str] = ()
) -> list[str]:
    """One line per error of ``error``, naming the environment variable of the field (or its
    CLI option, for the fields in ``options``, which came from the command line)."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a model validator: its message names the variables
            lines.append(message)
            continue
        field = str(item["loc"][0])
        where = f"--{field.replace('_', '-')}" if field in options else env_name(model, field)
        lines.append(f"{where}: {message}")
    return lines
