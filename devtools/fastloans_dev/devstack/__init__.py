"""The local stack: a real PostgreSQL primary + streaming replica and a real Kafka (KRaft) broker.

`make up` and the test fixtures use the same code, so what the tests start is
what a developer runs.
"""
