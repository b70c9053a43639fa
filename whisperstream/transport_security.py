"""Start-time checks of the transport security settings (Kafka, S3, Postgres).

A combination that could only fail later, at the first connection, with a library's
terse error (a SASL protocol without credentials, a CA file for a plaintext endpoint,
an unknown ``sslmode``) stops the process at start with a message naming the settings.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from whisperstream.settings import Settings

POSTGRES_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check_transport_security(settings: Settings) -> None:
    """Raise ValueError naming the settings that do not fit together."""
    _check_kafka(settings)
    if settings.s3_ca_file is not None:
        if not settings.s3_endpoint.startswith("https://"):
            raise ValueError("S3_CA_FILE is set but S3_ENDPOINT is not an https:// URL")
        check_ca_bundle("S3_CA_FILE", settings.s3_ca_file)
    if settings.database_url is not None:
        postgres_tls_params(settings.database_url)


def _check_kafka(settings: Settings) -> None:
    protocol = settings.kafka_security_protocol
    sasl_given = {
        "KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism is not None,
        "KAFKA_SASL_USERNAME": settings.kafka_sasl_username is not None,
        "KAFKA_SASL_PASSWORD": settings.kafka_sasl_password is not None,
    }
    if protocol.startswith("SASL_"):
        missing = [name for name, given in sasl_given.items() if not given]
        if missing:
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)} "
                "(mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )
    else:
        stray = [name for name, given in sasl_given.items() if given]
        if stray:
            raise ValueError(
                f"{', '.join(stray)} set but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                "SASL: use SASL_SSL (or SASL_PLAINTEXT)"
            )
    if settings.kafka_ssl_ca_file is not None:
        if not protocol.endswith("SSL"):
            raise ValueError(
                f"KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL={protocol} does not "
                "use TLS: use SSL or SASL_SSL"
            )
        check_ca_bundle("KAFKA_SSL_CA_FILE", settings.kafka_ssl_ca_file)


def check_ca_bundle(name: str, path: Path) -> None:
    """Raise ValueError unless ``path`` holds at least one PEM certificate."""
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{name}={path} is not a PEM CA bundle ({exc})") from exc


def postgres_tls_params(database_url: str) -> tuple[str | None, Path | None]:
    """``sslmode`` and ``sslrootcert`` of a Postgres URL (libpq's names), checked."""
    query = parse_qs(urlsplit(database_url).query)
    modes = query.get("sslmode", [])
    roots = query.get("sslrootcert", [])
    mode = modes[-1] if modes else None
    if mode is not None and mode not in POSTGRES_SSLMODES:
        raise ValueError(
            f"DATABASE_URL has sslmode={mode!r}; libpq accepts {', '.join(POSTGRES_SSLMODES)}"
        )
    root = Path(roots[-1]) if roots else None
    if root is not None:
        if not root.is_file():
            raise ValueError(f"DATABASE_URL has sslrootcert={root}, which is not a file")
        check_ca_bundle("DATABASE_URL's sslrootcert", root)
    if root is not None and mode in (None, "disable", "allow", "prefer"):
        raise ValueError(
            "DATABASE_URL has sslrootcert but no sslmode that checks certificates: "
            "add sslmode=verify-full (or verify-ca)"
        )
    return mode, root
