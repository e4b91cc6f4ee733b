"""Kafka over SASL_SSL with SCRAM-SHA-512, against a real KRaft node configured that way.

The node's only client listener is SASL_SSL; its certificate comes from a CA
made here, and the SCRAM credentials are written into the metadata log when the
storage is formatted (`kafka-storage format --add-scram`).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from fastloans.events import Topic
from fastloans.kafka import create_topics, make_consumer, make_producer, send_all
from fastloans.settings import Settings
from fastloans_dev.devstack.kafka import KafkaCluster
from fastloans_dev.devstack.system import free_port
from tests.integration.test_tls_postgres import Pki, make_pki

USER = "fastloans"
PASSWORD = secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def pki(state_dir: Path) -> Pki:
    """The broker's certificate (for 127.0.0.1 and localhost) and its CA."""
    return make_pki(state_dir / "pki-kafka", ["127.0.0.1", "localhost"])


@pytest.fixture(scope="module")
def broker(state_dir: Path, pki: Pki) -> Iterator[KafkaCluster]:
    """One KRaft node whose client and inter-broker listener is SASL_SSL with SCRAM-SHA-512."""
    jaas = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{USER}" password="{PASSWORD}";'
    cluster = KafkaCluster(
        state_dir / "kafka-sasl",
        ports=[free_port()],
        controller_ports=[free_port()],
        log_dir=state_dir / "logs",
        listener_protocol="SASL_SSL",
        heap="256m",
        format_args=["--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"],
        extra={
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(pki.keystore),
            "ssl.keystore.password": pki.keystore_password,
            "ssl.key.password": pki.keystore_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(pki.ca),
        },
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _settings(
    broker: KafkaCluster, *, password: str = PASSWORD, ca: Path | None = None, protocol: str = "SASL_SSL"
) -> Settings:
    return Settings(
        database_url="postgresql://unused@127.0.0.1:9/unused",
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER,
        kafka_sasl_password=password,
        kafka_ssl_cafile=ca,
        kafka_topic_prefix=f"sasl-{uuid.uuid4().hex[:6]}.",
        service_name="fastloans-sasl-test",
    )


async def test_produce_and_consume_over_sasl_ssl(broker: KafkaCluster, pki: Pki) -> None:
    settings = _settings(broker, ca=pki.ca)
    created = await create_topics(settings, partitions=1, replication_factor=1)
    topic = settings.topic(Topic.SUBMITTED.value)
    assert topic in created
    producer = make_producer(settings)
    await producer.start()
    try:
        await send_all(producer, [(topic, b"k", b"over SASL_SSL", [])])
    finally:
        await producer.stop()
    consumer = make_consumer(settings, topic, group=f"sasl-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        received = []
        for _ in range(30):
            batches = await consumer.getmany(timeout_ms=1000)
            received += [r.value for rs in batches.values() for r in rs]
            if received:
                break
    finally:
        await consumer.stop()
    assert received == [b"over SASL_SSL"]


async def test_a_wrong_password_is_refused(broker: KafkaCluster, pki: Pki) -> None:
    producer = make_producer(_settings(broker, password=secrets.token_urlsafe(8), ca=pki.ca), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


async def test_a_broker_signed_by_another_ca_is_refused(broker: KafkaCluster, state_dir: Path) -> None:
    other = make_pki(state_dir / "pki-kafka-other", ["127.0.0.1"], ca_name="Someone else's CA")
    producer = make_producer(_settings(broker, ca=other.ca), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


async def test_plaintext_clients_are_refused(broker: KafkaCluster) -> None:
    producer = make_producer(_settings(broker, protocol="PLAINTEXT"), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
