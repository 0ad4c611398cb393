"""How every aiokafka client of the project connects (admin, producer, consumer), from the one
Settings object, and a startup check that a broker answers and accepts the credentials.

The password leaves its ``SecretStr`` only here, in the keyword arguments handed to aiokafka.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from decay.errors import DecayError
from decay.settings import Settings


class KafkaAuthError(DecayError, RuntimeError):
    """The broker refused our credentials (or our TLS handshake): retrying will not help."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SASL_SSL (verifying the broker against ``ssl_cafile`` or the system
    CAs, host name included); None for the other protocols."""
    if settings.security_protocol != "SASL_SSL":
        return None
    cafile = str(settings.ssl_cafile) if settings.ssl_cafile is not None else None
    return ssl.create_default_context(cafile=cafile)


def auth_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka's security keyword arguments (empty for PLAINTEXT)."""
    if settings.security_protocol == "PLAINTEXT":
        return {}
    assert settings.sasl_password is not None  # Settings checks it with SASL
    return {
        "security_protocol": settings.security_protocol,
        "sasl_mechanism": settings.sasl_mechanism,
        "sasl_plain_username": settings.sasl_username,
        "sasl_plain_password": settings.sasl_password.get_secret_value(),
        "ssl_context": ssl_context(settings),
    }


def client_kwargs(target: Settings | str) -> dict[str, Any]:
    """``bootstrap_servers`` and the security arguments for an aiokafka client. A plain string
    is a bootstrap list on a PLAINTEXT listener (tests, tools)."""
    if isinstance(target, str):
        return {"bootstrap_servers": target}
    return {"bootstrap_servers": target.bootstrap, **auth_kwargs(target)}


class KafkaUnreachableError(DecayError, RuntimeError):
    """No bootstrap server accepted a connection."""


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if port and not port.isdigit():
            raise KafkaUnreachableError(f"bootstrap server {item.strip()!r} is not HOST:PORT")
        out.append((host.strip("[]") or "127.0.0.1", int(port or 9092)))
    return out


def _why(exc: OSError) -> str:
    """``Connection refused``, ``Name or service not known``...: the system's words."""
    if isinstance(exc, TimeoutError):
        return "no answer"
    if isinstance(exc, ConnectionError) and exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


async def check_connection(settings: Settings, timeout: float = 15.0) -> None:
    """Connect once to the bootstrap servers, in turn, and authenticate when the settings use
    SASL. Raise :class:`KafkaUnreachableError` when none accepts a connection (the clients
    would give up with a traceback, or log and retry forever) and :class:`KafkaAuthError`
    when the broker refuses the credentials or the TLS handshake."""
    kwargs = auth_kwargs(settings)
    failures = []
    for host, port in _hosts(settings.bootstrap):
        where = f"{host}:{port}"
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(timeout * 1000), **kwargs),
                timeout,
            )
        except (SaslAuthenticationFailed, IllegalSaslStateError) as exc:
            raise KafkaAuthError(
                f"Kafka authentication failed for user {settings.sasl_username!r} "
                f"({settings.sasl_mechanism} over {settings.security_protocol} to {where}): "
                f"{getattr(exc, 'args', [''])[0] or exc}"
            ) from None
        except UnsupportedSaslMechanismError as exc:
            raise KafkaAuthError(f"Kafka at {where} refused SASL mechanism: {exc}") from None
        except ssl.SSLError as exc:
            raise KafkaAuthError(f"TLS handshake with Kafka at {where} failed: {exc}") from None
        except OSError as exc:  # TimeoutError included: try the next server
            failures.append(f"{where}: {_why(exc)}")
            continue
        conn.close()
        return
    raise KafkaUnreachableError(f"no Kafka broker reachable at {', '.join(failures)}")
