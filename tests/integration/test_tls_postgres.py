"""PostgreSQL over TLS (`sslmode=verify-full`) with SCRAM passwords, against a real server configured that way.

The certificates are made here: a throwaway CA and a server certificate for
`localhost` only, so that verify-full's hostname check can be seen to work.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fastloans.db import Database, asyncpg_connect
from fastloans.settings import Settings
from fastloans_dev.devstack.postgres import PostgresServer, _usable_root, ensure_installed
from fastloans_dev.devstack.system import free_port, service_user

PASSWORD = secrets.token_urlsafe(18)


@dataclass(frozen=True)
class Pki:
    """A CA certificate and a server certificate + key it signed, as PEM files (and PKCS#12 for Java)."""

    ca: Path
    cert: Path
    key: Path
    keystore: Path
    keystore_password: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path, hosts: list[str], *, ca_name: str = "Fast Loans test CA") -> Pki:
    """Create a CA and a server certificate for `hosts` (DNS names or IP addresses) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        directory / "ca.pem",
        directory / "server.crt",
        directory / "server.key",
        directory / "server.p12",
        secrets.token_urlsafe(12),
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(pki.key, 0o600)
    pki.keystore.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"server", key, cert, [ca_cert], serialization.BestAvailableEncryption(pki.keystore_password.encode())
        )
    )
    return pki


@pytest.fixture(scope="module")
def pki(state_dir: Path) -> Pki:
    """The server's certificate (for `localhost` only) and its CA."""
    return make_pki(state_dir / "pki-postgres", ["localhost"])


@pytest.fixture(scope="module")
def tls_server(state_dir: Path, pki: Pki) -> Iterator[PostgresServer]:
    """A PostgreSQL server that accepts only TLS connections with SCRAM passwords on TCP."""
    user = service_user()
    root = _usable_root(state_dir / "pg-tls", user)
    server = PostgresServer("postgres-tls", root / "data", free_port(), ensure_installed(), user, state_dir / "logs")
    server.init_primary(durable=False)
    server.start()
    try:
        server.psql(f"CREATE ROLE fastloans LOGIN PASSWORD '{PASSWORD}'")
        server.psql("CREATE DATABASE fastloans OWNER fastloans")
        server.stop()
        for source in (pki.cert, pki.key):
            (server.data_dir / source.name).write_bytes(source.read_bytes())
        os.chmod(server.data_dir / pki.key.name, 0o600)
        user.chown(server.data_dir)
        with open(server.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"ssl = on\nssl_cert_file = '{pki.cert.name}'\nssl_key_file = '{pki.key.name}'\n"
                "ssl_min_protocol_version = 'TLSv1.2'\npassword_encryption = 'scram-sha-256'\n"
            )
        # TCP only with TLS and a SCRAM password; the local socket stays for administration.
        (server.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n"
        )
        server.start()
        yield server
    finally:
        server.stop()


def _settings(
    server: PostgresServer,
    *,
    host: str = "localhost",
    password: str = PASSWORD,
    sslmode: str = "verify-full",
    ca: Path | None = None,
) -> Settings:
    return Settings(
        database_url=f"postgresql://fastloans@{host}:{server.port}/fastloans",
        database_password=password,
        database_sslmode=sslmode,
        database_sslrootcert=ca,
        kafka_bootstrap_servers="127.0.0.1:9",
        service_name="fastloans-tls-test",
    )


async def test_verify_full_connects_over_tls(tls_server: PostgresServer, pki: Pki) -> None:
    settings = _settings(tls_server, ca=pki.ca)
    conn = await asyncpg_connect(settings.primary_dsn(), settings)
    try:
        row = await conn.fetchrow("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()
    assert row["ssl"] is True and row["version"] in {"TLSv1.2", "TLSv1.3"}


@pytest.fixture
async def database(tls_server: PostgresServer, pki: Pki) -> AsyncIterator[Database]:
    """The services' own engines (SQLAlchemy pool over asyncpg), configured for verify-full."""
    db = Database.from_settings(_settings(tls_server, ca=pki.ca))
    yield db
    await db.dispose()


async def test_the_services_database_pools_use_tls(database: Database) -> None:
    assert (await database.ping())["primary"] is True
    async with database.connection() as conn:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True


async def test_a_server_signed_by_another_ca_is_refused(tls_server: PostgresServer, state_dir: Path) -> None:
    other = make_pki(state_dir / "pki-other", ["localhost"], ca_name="Someone else's CA")
    settings = _settings(tls_server, ca=other.ca)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await asyncpg_connect(settings.primary_dsn(), settings)


async def test_verify_full_checks_the_host_name(tls_server: PostgresServer, pki: Pki) -> None:
    # The certificate names `localhost` only: 127.0.0.1 is the right server but not the name it proves.
    by_address = _settings(tls_server, host="127.0.0.1", ca=pki.ca)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"IP address mismatch|doesn't match|hostname"):
        await asyncpg_connect(by_address.primary_dsn(), by_address)
    verify_ca = _settings(tls_server, host="127.0.0.1", sslmode="verify-ca", ca=pki.ca)
    conn = await asyncpg_connect(verify_ca.primary_dsn(), verify_ca)
    await conn.close()


async def test_a_wrong_password_is_refused(tls_server: PostgresServer, pki: Pki) -> None:
    settings = _settings(tls_server, password=secrets.token_urlsafe(8), ca=pki.ca)
    with pytest.raises(asyncpg.InvalidPasswordError, match="password authentication failed"):
        await asyncpg_connect(settings.primary_dsn(), settings)


async def test_plaintext_connections_are_refused(tls_server: PostgresServer) -> None:
    settings = _settings(tls_server, sslmode="disable")
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg_connect(settings.primary_dsn(), settings)
