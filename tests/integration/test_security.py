"""SASL/SCRAM (and SASL over TLS) to the broker, and HTTP on loopback only.

These tests start their own broker: a PLAINTEXT listener (kafka.sh's readiness probe and the
tests' own reads), a SASL_PLAINTEXT and a SASL_SSL one, both SCRAM-SHA-512, with the user
created at format time (``--add-scram``). The certificate is self-signed, made by keytool.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from decay.settings import Settings
from decay_cli.alert_feed import follow_alerts
from decay_cli.replay import produce
from decay_kafka.kafka_broker import KafkaBroker, find_repo_root
from decay_kafka.kafka_client import KafkaAuthError, check_connection
from decay_kafka.topics import ensure_topics
from tests.integration.conftest import _free_ports, _warm_group_coordinator
from tests.integration.harness import Setup, WorkerProcess, read_topic
from tests.integration.test_stream import simulated_messages

pytestmark = pytest.mark.kafka

USER = "decay"
PASSWORD = "s3cret-Pw-7f2a9c"  # no spaces, commas or brackets: it goes through --add-scram
WRONG = "not-the-Pw-81d3e0"
JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass
class SecureBroker:
    broker: KafkaBroker
    sasl: str  # SASL_PLAINTEXT bootstrap
    sasl_ssl: str  # SASL_SSL bootstrap
    cafile: Path

    @property
    def plain(self) -> str:
        return self.broker.bootstrap


def _self_signed(directory: Path, password: str) -> tuple[Path, Path]:
    """A PKCS12 keystore for 127.0.0.1 and its certificate as PEM (the clients' CA file)."""
    keystore, cert = directory / "broker.p12", directory / "broker.pem"
    common = ["-alias", "broker", "-keystore", str(keystore), "-storepass", password]
    key = ["-storetype", "PKCS12", "-keyalg", "RSA", "-keysize", "2048", "-keypass", password]
    cert_args = ["-validity", "2", "-dname", "CN=127.0.0.1", "-ext", "SAN=ip:127.0.0.1"]
    subprocess.run(
        ["keytool", "-genkeypair", *common, *key, *cert_args],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["keytool", "-exportcert", "-rfc", *common, "-file", str(cert)],
        check=True,
        capture_output=True,
    )
    return keystore, cert


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    plain, controller, sasl, sasl_ssl = _free_ports(4)
    tls_dir = tmp_path_factory.mktemp("tls")
    store_password = "keystore-pw"
    keystore, cert = _self_signed(tls_dir, store_password)
    h = "127.0.0.1"
    props = [
        f"listeners=PLAINTEXT://{h}:{plain},CONTROLLER://{h}:{controller},"
        f"SASL_PLAINTEXT://{h}:{sasl},SASL_SSL://{h}:{sasl_ssl}",
        f"advertised.listeners=PLAINTEXT://{h}:{plain},SASL_PLAINTEXT://{h}:{sasl},"
        f"SASL_SSL://{h}:{sasl_ssl}",
        "inter.broker.listener.name=PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={JAAS}",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={JAAS}",
        "listener.name.sasl_ssl.ssl.keystore.type=PKCS12",
        f"listener.name.sasl_ssl.ssl.keystore.location={keystore}",
        f"listener.name.sasl_ssl.ssl.keystore.password={store_password}",
        f"listener.name.sasl_ssl.ssl.key.password={store_password}",
    ]
    broker = KafkaBroker(
        find_repo_root(),
        data_dir=tmp_path_factory.mktemp("kafka-sasl"),
        port=plain,
        controller_port=controller,
        extra_props=props,
        format_args=["--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"],
    )
    broker.start()
    try:
        asyncio.run(_warm_group_coordinator(broker.bootstrap))
        yield SecureBroker(broker, f"{h}:{sasl}", f"{h}:{sasl_ssl}", cert)
    finally:
        broker.stop()


def _sasl_overrides(bootstrap: str, password: str = PASSWORD, **more: Any) -> dict[str, Any]:
    return {
        "bootstrap": bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": USER,
        "sasl_password": password,
        **more,
    }


@dataclass
class RunningWorker:
    setup: Setup
    worker: WorkerProcess
    sent: int


@pytest.fixture(scope="module")
def sasl_worker(
    secure_broker: SecureBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningWorker]:
    """A worker on the SASL_PLAINTEXT listener that has consumed a small simulated log and
    one message that is not JSON."""
    tmp = tmp_path_factory.mktemp("sasl-worker")
    setup = Setup(
        "sasl",
        secure_broker.sasl,
        tmp / "state",
        partitions=1,  # one partition: one watermark, so silent users' deadlines do fire
        overrides=_sasl_overrides(secure_broker.sasl, scorer="baseline", log_level="debug"),
    )
    s = setup.settings()
    setup.create_topics()  # the admin client, over SASL
    messages = [*simulated_messages(users=40, days=30, seed=3), (b"u-bad", b"{not json")]
    asyncio.run(produce(messages, s, s.events_topic))  # the producer, over SASL
    worker = WorkerProcess(setup, tmp / "worker.log")
    try:
        yield RunningWorker(setup, worker, len(messages))
    finally:
        worker.stop()


def test_worker_consumes_and_publishes_over_sasl_scram(
    sasl_worker: RunningWorker, secure_broker: SecureBroker
) -> None:
    worker, s = sasl_worker.worker, sasl_worker.setup.settings()
    worker.wait_for(lambda: worker.events_seen() >= sasl_worker.sent, 120, "every record")
    metrics = worker.metrics()
    assert metrics['decay_events_total{result="ok"}'] > 0
    assert metrics['decay_dead_letters_total{reason="invalid_json"}'] == 1
    # What the worker published reached the topics (read back on the PLAINTEXT listener).
    dead = read_topic(secure_broker.plain, s.dead_letter_topic)
    assert [m.value for m in dead] == [b"{not json"]
    alerts = read_topic(secure_broker.plain, s.alerts_topic)
    assert alerts, "no alert published"
    # ... and a SASL consumer (decay alerts) reads them too.
    got: list[dict[str, Any]] = []
    asyncio.run(follow_alerts(s, s.alerts_topic, got.append, max_alerts=1, idle_timeout=20))
    assert len(got) == 1
    log = worker.log_path.read_text(errors="replace")
    assert PASSWORD not in log
    assert "Traceback" not in log


def test_wrong_password_stops_the_worker_with_one_clear_error(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    setup = Setup(
        "wrongpw",
        secure_broker.sasl,
        tmp_path / "state",
        overrides=_sasl_overrides(secure_broker.sasl, password=WRONG),
    )
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        rc = worker.proc.wait(timeout=60)
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert rc == 2, log
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1, log
    assert "Kafka authentication failed for user 'decay'" in errors[0]
    assert "Traceback" not in log
    assert WRONG not in log and PASSWORD not in log
    # The other commands that talk to Kafka check the same way.
    topics = subprocess.run(
        [sys.executable, "-m", "decay", "topics"],
        env=setup.env(web_port=0),
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = topics.stdout + topics.stderr
    assert topics.returncode == 2, out
    assert "Kafka authentication failed" in out and "Traceback" not in out
    assert WRONG not in out


def _with(settings: Settings, **changes: Any) -> Settings:
    return Settings(**{**settings.model_dump(), **changes})  # validated, unlike model_copy


def test_sasl_over_tls_admin_producer_consumer(secure_broker: SecureBroker) -> None:
    s = Settings(
        **_sasl_overrides(
            secure_broker.sasl_ssl,
            security_protocol="SASL_SSL",
            ssl_cafile=secure_broker.cafile,
            app_id="tls-app",
            alerts_topic="tls-alerts",
            events_topic="tls-events",
            dead_letter_topic="tls-dlq",
            erase_topic="tls-erase",
            partitions=1,
        )
    )
    asyncio.run(check_connection(s))
    assert s.alerts_topic in asyncio.run(ensure_topics(s))
    alert = b'{"kind": "dormant", "user_id": "u1"}'
    asyncio.run(produce([(b"u1", alert)], s, s.alerts_topic))
    got: list[dict[str, Any]] = []
    asyncio.run(follow_alerts(s, s.alerts_topic, got.append, max_alerts=1, idle_timeout=20))
    assert got == [{"kind": "dormant", "user_id": "u1"}]
    with pytest.raises(KafkaAuthError, match="authentication failed"):
        asyncio.run(check_connection(_with(s, sasl_password=WRONG)))
    untrusted = _with(s, ssl_cafile=None)  # the system CAs do not sign it
    with pytest.raises(KafkaAuthError, match="TLS handshake"):
        asyncio.run(check_connection(untrusted))


def test_worker_over_sasl_ssl(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """Faust's own clients (consumer, producer, topic creation) over SASL_SSL."""
    tls = _sasl_overrides(
        secure_broker.sasl_ssl, security_protocol="SASL_SSL", ssl_cafile=secure_broker.cafile
    )
    setup = Setup("tlsworker", secure_broker.sasl_ssl, tmp_path / "state", 1, tls)
    s = setup.settings()
    setup.create_topics()
    messages = [(b"u1", b"{not json"), (b"u2", b'{"user_id": "u2"}')]
    asyncio.run(produce(messages, s, s.events_topic))
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        worker.wait_for(lambda: worker.events_seen() >= 2, 120, "both records")
        dead = read_topic(secure_broker.plain, s.dead_letter_topic)
        assert sorted(m.key for m in dead) == [b"u1", b"u2"]
    finally:
        assert worker.stop() == 0
    assert PASSWORD not in worker.log_path.read_text(errors="replace")


def _non_loopback_addresses() -> list[str]:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5)
        found = out.stdout.split()
    except (OSError, subprocess.SubprocessError):
        found = []
    if not found:
        try:
            found = [i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None)]
        except OSError:
            found = []
    return sorted({a for a in found if not a.startswith("127.") and a not in ("::1",)})


def test_http_binds_to_loopback_by_default(sasl_worker: RunningWorker) -> None:
    assert Settings.model_fields["web_host"].default == "127.0.0.1"
    worker = sasl_worker.worker
    worker.wait_for(lambda: bool(worker.metrics()), 60, "the HTTP server")  # up on loopback
    others = _non_loopback_addresses()
    if not others:
        pytest.skip("this machine has no non-loopback address")
    for address in others:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            started = time.monotonic()
            with pytest.raises(OSError):
                sock.connect((address, worker.port))
            assert time.monotonic() - started < 3.5
