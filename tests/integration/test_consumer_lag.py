"""The lag maths bench and chaos share (bench/checks.py), against the real broker."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import checks
from fastloans.kafka import connection_options


async def test_lag_and_committed_totals_of_a_group(infra) -> None:
    settings = infra.settings()
    topic, group = f"test-lag-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(**connection_options(settings))
    reader = AIOKafkaConsumer(**connection_options(settings))
    committer = AIOKafkaConsumer(**connection_options(settings), group_id=group, enable_auto_commit=False)
    await admin.start()
    await reader.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        parts = await checks.topic_partitions(admin, topic)
        assert parts == [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        producer = AIOKafkaProducer(**connection_options(settings))
        await producer.start()
        try:
            for i in range(15):
                await producer.send_and_wait(topic, f"v{i}".encode(), key=b"k", partition=0 if i < 10 else 1)
        finally:
            await producer.stop()
        await committer.start()
        committer.assign(parts)
        # Four messages of partition 0 done; nothing ever committed on partition 1 (Kafka reports -1 there).
        await committer.commit({parts[0]: 4})
        offsets = await checks.group_offsets(admin, reader, {"t": parts}, groups={group: "t"})
    finally:
        await committer.stop()
        await reader.stop()
        await admin.close()
    assert offsets == {group: checks.GroupOffsets(committed=4, lag=6 + 5)}
