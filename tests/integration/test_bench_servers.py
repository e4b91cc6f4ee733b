"""`python -m bench.servers`: each server really serves the bare app, and its CPU per request is measured
(real servers and the real load generator on loopback)."""

from __future__ import annotations

import pytest

from bench.servers import available, measure

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", available())
def test_each_server_answers_every_request_and_its_cpu_is_counted(name: str) -> None:
    figures = measure(name, seconds=1.0, connections=4)
    assert figures["errors"] == 0
    assert figures["requests_per_s"] > 100
    # A server answering hundreds of requests uses some CPU, and nowhere near a second per request.
    assert 0 < figures["cpu_ms_per_request"] < 100
