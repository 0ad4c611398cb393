"""The security settings and the aiokafka keyword arguments built from them."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest
from pydantic import ValidationError

from decay.settings import Settings
from decay_kafka.kafka_client import KafkaUnreachableError, check_connection, client_kwargs

SECRET = "pw-never-printed-42"


def sasl(**more: object) -> Settings:
    fields: dict[str, object] = {
        "bootstrap": "k:9094",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_username": "decay",
        "sasl_password": SECRET,
    }
    return Settings(**{**fields, **more})  # type: ignore[arg-type]


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert Settings.model_fields["security_protocol"].default == "PLAINTEXT"
    assert client_kwargs(Settings(bootstrap="k:9092")) == {"bootstrap_servers": "k:9092"}
    assert client_kwargs("k:9092") == {"bootstrap_servers": "k:9092"}


def test_sasl_kwargs_carry_the_credentials() -> None:
    kwargs = client_kwargs(sasl())
    assert kwargs == {
        "bootstrap_servers": "k:9094",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "decay",
        "sasl_plain_password": SECRET,
        "ssl_context": None,
    }


def test_sasl_ssl_verifies_the_broker() -> None:
    context = client_kwargs(sasl(security_protocol="SASL_SSL"))["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_the_password_is_not_in_reprs_or_validation_errors() -> None:
    assert SECRET not in repr(sasl()) and SECRET not in str(sasl())
    with pytest.raises(ValidationError) as info:  # SASL without a user name
        Settings(security_protocol="SASL_SSL", sasl_password=SECRET)
    assert "needs sasl_username and sasl_password" in str(info.value)
    assert SECRET not in str(info.value)
    with pytest.raises(ValidationError) as info:  # another field wrong, the password given
        Settings(sasl_password=SECRET, partitions=0)
    assert SECRET not in str(info.value)


def test_faust_gets_the_same_credentials() -> None:
    from stream_app.app import broker_credentials

    assert broker_credentials(Settings()) is None
    creds = broker_credentials(sasl())
    assert creds is not None
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "decay",
        SECRET,
        "SCRAM-SHA-512",
    )
    assert creds.protocol.value == "SASL_PLAINTEXT" and SECRET not in repr(creds)
    tls = broker_credentials(sasl(security_protocol="SASL_SSL"))
    assert tls is not None and tls.protocol.value == "SASL_SSL"


def test_no_broker_is_an_error_naming_each_address() -> None:
    with socket.socket() as a, socket.socket() as b:  # bound, then closed: nobody listens
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        ports = [a.getsockname()[1], b.getsockname()[1]]
    bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports)
    with pytest.raises(KafkaUnreachableError) as info:
        asyncio.run(check_connection(Settings(bootstrap=bootstrap), timeout=5))
    assert str(info.value) == (
        f"no Kafka broker reachable at 127.0.0.1:{ports[0]}: Connection refused, "
        f"127.0.0.1:{ports[1]}: Connection refused"
    )


def test_a_bootstrap_address_without_a_port_number() -> None:
    with pytest.raises(KafkaUnreachableError, match="'k:abc' is not HOST:PORT"):
        asyncio.run(check_connection(Settings(bootstrap="k:abc")))
