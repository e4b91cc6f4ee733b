"""`fastloans up` (what `make up` runs): ready with stack.env, streaming replica, clean stop, warm restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fastloans import services as registry
from fastloans_dev.devstack.system import free_port, port_in_use

READY_TIMEOUT = 240


ROOT = Path(__file__).resolve().parents[2]


def _start(
    state: Path, ports: dict[str, int], demo_key: str = "fl_test_demo_key_0123456789"
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FASTLOANS_STATE_DIR": str(state), "FASTLOANS_DEMO_API_KEY": demo_key}
    env.update({f"FASTLOANS_{name}_PORT": str(port) for name, port in ports.items()})
    fastloans = Path(sys.executable).with_name("fastloans")
    return subprocess.Popen([str(fastloans), "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_ready(process: subprocess.Popen[bytes], stack_env: Path) -> float:
    started = time.monotonic()
    while not stack_env.exists():
        if process.poll() is not None:
            pytest.fail(f"fastloans up exited early:\n{process.stdout.read().decode()}")  # type: ignore[union-attr]
        if time.monotonic() - started > READY_TIMEOUT:
            process.kill()
            pytest.fail("fastloans up was not ready in time")
        time.sleep(0.2)
    return time.monotonic() - started


def _stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    output = process.stdout.read().decode()  # type: ignore[union-attr]
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"children left running: {[p.pid for p in alive]}"
    return code, output


def _free_ports() -> dict[str, int]:
    names = ("PG", "REPLICA", "KAFKA", "KAFKA_CONTROLLER", *(s.short.upper() for s in registry.SERVICES), "GATEWAY_OPS")
    return {name: free_port() for name in names}


def _running_under(state: Path) -> list[int]:
    """Processes whose command line names the state directory (PostgreSQL, Kafka, services' logs)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(state) in part for part in process.info["cmdline"] or ()):
            found.append(process.pid)
    return found


def test_up_is_ready_then_stops_cleanly_and_restarts_warm(tmp_path: Path) -> None:
    state = ROOT / ".fastloans" / f"up-test-{os.getpid()}"
    ports = _free_ports()
    stack_env = state / "stack.env"
    try:
        process = _start(state, ports)
        cold = _wait_ready(process, stack_env)
        values = dict(line.split("=", 1) for line in stack_env.read_text().splitlines())
        values = {k: v.strip('"') for k, v in values.items()}
        assert values["FASTLOANS_API_URL"] == f"http://127.0.0.1:{ports['GATEWAY']}"
        assert values["DATABASE_URL"].endswith(f":{ports['PG']}/fastloans")
        assert values["DATABASE_READ_URL"].endswith(f":{ports['REPLICA']}/fastloans")
        assert values["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{ports['KAFKA']}"
        assert len(values["FASTLOANS_METRICS_URLS"].split()) == len(registry.SERVICES)
        assert f"http://127.0.0.1:{ports['GATEWAY_OPS']}/metrics" in values["FASTLOANS_METRICS_URLS"].split()
        streaming = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(ports["PG"]),
                "-U",
                "postgres",
                "-At",
                "-c",
                "SELECT state FROM pg_stat_replication",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert streaming == ["streaming"]
        code, output = _stop(process)
        assert code == 0, output
        assert "stopped" in output and not stack_env.exists()
        assert not port_in_use(ports["GATEWAY"]) and not port_in_use(ports["PG"])

        process = _start(state, ports)
        warm = _wait_ready(process, stack_env)
        code, output = _stop(process)
        assert code == 0, output
        print(f"fastloans up: cold start {cold:.1f}s, warm start {warm:.1f}s")
    finally:
        subprocess.run(["pkill", "-f", str(state)], check=False)


def test_a_port_in_use_gets_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        process = _start(
            tmp_path / "state",
            {
                "GATEWAY": taken,
                "PG": free_port(),
                "REPLICA": free_port(),
                "KAFKA": free_port(),
                "KAFKA_CONTROLLER": free_port(),
            },
        )
        code = process.wait(timeout=60)
        output = process.stdout.read().decode()  # type: ignore[union-attr]
    assert code == 1
    assert f"gateway service port {taken}" in output and "already in use" in output


def test_a_start_that_fails_midway_stops_what_it_started() -> None:
    """PostgreSQL and Kafka are up when the demo key is checked: a bad key must not leave them running."""
    state = ROOT / ".fastloans" / f"up-fail-test-{os.getpid()}"
    ports = _free_ports()
    try:
        process = _start(state, ports, demo_key="too-short")
        code = process.wait(timeout=READY_TIMEOUT)
        output = process.stdout.read().decode()  # type: ignore[union-attr]
        assert code == 1, output
        assert "FASTLOANS_DEMO_API_KEY cannot be used" in output and "at least 16 characters" in output
        assert "Traceback" not in output
        assert _running_under(state) == []
        assert not any(port_in_use(ports[name]) for name in ("PG", "REPLICA", "KAFKA", "GATEWAY"))
    finally:
        for pid in _running_under(state):
            psutil.Process(pid).kill()
        shutil.rmtree(state, ignore_errors=True)
