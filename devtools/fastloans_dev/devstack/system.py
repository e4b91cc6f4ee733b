"""Machine-level helpers for the local stack: paths, ports, a non-root user, child processes."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_USER = "fastloans"


class StackError(RuntimeError):
    """A problem starting the local stack, with a message meant for a person."""


def cache_dir() -> Path:
    """Downloads shared by every checkout (Kafka jars, tools): outside the repository."""
    base = os.environ.get("FASTLOANS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fastloans"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir() -> Path:
    """Where the local stack keeps its data (`.fastloans/` in the working directory)."""
    path = Path(os.environ.get("FASTLOANS_STATE_DIR") or Path.cwd() / ".fastloans").absolute()
    path.mkdir(parents=True, exist_ok=True)
    return path


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_free(ports: dict[str, int]) -> None:
    """Fail with a clear message naming every port that is already taken."""
    taken = [f"{name} port {port}" for name, port in ports.items() if port_in_use(port)]
    if taken:
        raise StackError(
            "already in use: "
            + ", ".join(taken)
            + " (stop whatever listens there, or choose other ports with the FASTLOANS_*_PORT variables)"
        )


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll `check` until it returns True or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user PostgreSQL runs as (it refuses to run as root)."""

    uid: int
    gid: int
    name: str

    def chown(self, path: Path) -> None:
        """Give `path` (recursively) to this user."""
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)

    def popen_args(self) -> dict[str, object]:
        """Arguments for `subprocess.Popen` that drop to this user."""
        if os.geteuid() != 0:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def can_use(self, path: Path) -> bool:
        """Whether this user can create files in `path` (every parent must be traversable)."""
        if os.geteuid() != 0:
            return True
        result = subprocess.run(
            ["test", "-w", str(path), "-a", "-x", str(path)],
            check=False,
            **self.popen_args(),  # type: ignore[arg-type]
        )
        return result.returncode == 0


def service_user() -> RunAs:
    """The current user, or (as root) a system user created for the stack."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
        )
        entry = pwd.getpwnam(SERVICE_USER)
    grp.getgrgid(entry.pw_gid)
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)


def log(message: str) -> None:
    """Progress for a person watching the stack start."""
    print(f"[fastloans] {message}", file=sys.stderr, flush=True)


@dataclass
class Child:
    """A child process of the stack, with its own log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen_extra: dict[str, object] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process; its output goes to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        output = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                self.argv,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                **self.popen_extra,
            )
        finally:
            output.close()

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` to the process if it is alive."""
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Ask the process to stop, then kill it if it takes longer than `timeout`."""
        if self.process is None:
            return None
        self.signal(self.stop_signal)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop within {timeout:.0f}s; killing it")
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """SIGKILL the process (used by fault-injection tests)."""
        if self.process is not None:
            self.signal(signal.SIGKILL)
            self.process.wait()

    def tail(self, lines: int = 20) -> str:
        """The last lines of the log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
