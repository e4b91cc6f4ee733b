"""The load generator: raw HTTP/1.1 keep-alive connections, one request in flight per connection.

Open loop: request i is due at `start + i / rate` whether or not earlier ones
have answered, and its latency is measured from that intended time, so a slow
server shows up as queueing instead of being hidden by a client that waits.
Closed loop (`rate=None`): `connections` clients send back to back, for
throughput ceilings. Each generator runs in its own process (uvloop, httptools).

It behaves as a careful client does: a connection idle for `IDLE_EXPIRY` is not reused (a server closes idle
connections after its own keep-alive timeout, and a request written as it closes gets a reset), and a request that
may be sent twice (a GET, or a POST with an `Idempotency-Key`: never a second application) and got no answer on a
reused connection is sent once more on a new one. Retries are counted by the cause of the first failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import httptools
import orjson

from fastloans.contracts import IDEMPOTENCY_KEY_HEADER

REQUEST_TIMEOUT = 30.0
PROGRESS_SECONDS = 1.0
# An idle connection older than this is closed instead of reused: below any keep-alive timeout a server is expected
# to have (the gateway's default is 75 s; ingress-nginx's upstream one is 60 s).
IDLE_EXPIRY = 30.0
IDEMPOTENCY_MARK = f"\r\n{IDEMPOTENCY_KEY_HEADER}:".lower().encode()
# The cause recorded for a request that waited REQUEST_TIMEOUT for a free connection and was never sent.
NEVER_SENT = "GaveUpWaiting"


@dataclass
class Job:
    """One generator process's share of a phase."""

    host: str
    port: int
    requests: list[bytes]
    duration: float
    rate: float | None
    connections: int
    start_at: float
    phase_offset: float = 0.0
    keep_ids: bool = False


@dataclass
class Outcome:
    """What one generator process saw: one entry per request, in send order."""

    intended: array = field(default_factory=lambda: array("d"))
    latency: array = field(default_factory=lambda: array("d"))
    status: array = field(default_factory=lambda: array("H"))
    accepted: list[str] = field(default_factory=list)
    send_lag: array = field(default_factory=lambda: array("d"))
    timeouts: int = 0
    # Why requests got no answer, by exception name (a timeout, a reset, a refused connection...) and, on a
    # connection used before, how long it had been idle.
    causes: dict[str, int] = field(default_factory=dict)
    # Requests that got no answer on a reused connection and were sent again on a new one, by the same naming.
    retried: dict[str, int] = field(default_factory=dict)


class _Conn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client connection with an httptools response parser."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body = bytearray()
        self.closed = False
        self.idle_since: float | None = None  # when its last response completed (None: never used)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(error)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), bytes(self.body)))
        self.body.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("closed by the server"))

    def _fail(self, error: BaseException) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request and wait for its response."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await asyncio.wait_for(self.waiter, REQUEST_TIMEOUT)

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Up to `limit` connections in use at once: an idle one is reused, else a new one is opened.

    A slot is a semaphore's: waiters are served in order, one per release, and a connection the server
    closed while idle is simply dropped by the next request that takes the slot.
    """

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[_Conn] = []
        self.slots = asyncio.Semaphore(limit)

    async def acquire(self, *, fresh: bool = False) -> _Conn:
        """An idle connection (unless `fresh`, or idle for `IDLE_EXPIRY`) or a new one, once a slot is free."""
        await self.slots.acquire()
        try:
            now = time.monotonic()
            while self.idle and not fresh:
                conn = self.idle.pop()
                usable = not conn.closed and conn.transport is not None and not conn.transport.is_closing()
                if usable and conn.idle_since is not None and now - conn.idle_since < IDLE_EXPIRY:
                    return conn
                conn.close()
            connecting = asyncio.get_running_loop().create_connection(_Conn, self.host, self.port)
            _, conn = await asyncio.wait_for(connecting, REQUEST_TIMEOUT)
            return conn
        except BaseException:
            self.slots.release()
            raise

    async def release(self, conn: _Conn) -> None:
        """Give back a connection's slot (a broken connection is dropped)."""
        if conn.closed:
            conn.close()
        else:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        self.slots.release()

    def close(self) -> None:
        """Close every idle connection."""
        for conn in self.idle:
            conn.close()


class _Run:
    """The state of one generator process during a phase."""

    def __init__(self, job: Job, progress: Connection | None) -> None:
        self.job = job
        self.progress = progress
        self.outcome = Outcome()
        self.pool = _Pool(job.host, job.port, job.connections)
        self.done = 0
        self.errors = 0

    def _record(self, index: int, status: int, latency: float, body: bytes) -> None:
        self.outcome.latency[index] = latency
        self.outcome.status[index] = status
        if self.job.keep_ids and status == 202:
            self.outcome.accepted.append(orjson.loads(body)["id"])
        self.done += 1
        if not 200 <= status < 300:
            self.errors += 1

    def _slot(self, intended: float, send_lag: float) -> int:
        out = self.outcome
        out.intended.append(intended)
        out.latency.append(float("nan"))
        out.status.append(0)
        out.send_lag.append(send_lag)
        return len(out.intended) - 1

    async def _one(self, index: int, request: bytes, intended_mono: float) -> None:
        status, body = await self._attempt(request, fresh=False)
        if status < 0:  # no answer on a reused connection (the body names why)
            if retry_safe(request):  # once more, on a new one
                _count(self.outcome.retried, body.decode())
                status, body = await self._attempt(request, fresh=True)
            else:
                _count(self.outcome.causes, body.decode())
        self._record(index, max(0, status), time.monotonic() - intended_mono, b"" if status <= 0 else body)

    async def _attempt(self, request: bytes, *, fresh: bool) -> tuple[int, bytes]:
        """The status and body of one exchange; status 0 when there was no answer (its cause counted), and -1 with
        the cause as the body when there was none on a connection used before (the caller may send it again)."""
        try:
            conn = await self.pool.acquire(fresh=fresh)
            idle = None if conn.idle_since is None else time.monotonic() - conn.idle_since
            try:
                return await conn.exchange(request)
            except Exception as error:  # no answer (a timeout, a reset, a transport already closed)
                conn.closed = True
                conn.close()
                if idle is not None and not isinstance(error, TimeoutError):
                    return -1, cause(error, idle).encode()
                _count(self.outcome.causes, cause(error, idle))
            finally:
                await self.pool.release(conn)
        except OSError as error:  # no connection
            _count(self.outcome.causes, cause(error, None))
            await asyncio.sleep(0.01)
        return 0, b""

    async def _report(self) -> None:
        while self.progress is not None:
            await asyncio.sleep(PROGRESS_SECONDS)
            self.progress.send(("progress", self.done, self.errors))

    async def open_loop(self) -> None:
        """Send at the fixed rate; latency counts from each request's intended send time.

        Requests are queued at their intended times and sent by one worker per connection, so a server slower
        than the rate makes the queue (and the latency) grow, never the generator's own work per request. A
        request still queued `REQUEST_TIMEOUT` after its time is given up unsent, as a client would.
        """
        job = self.job
        assert job.rate is not None
        interval = 1.0 / job.rate
        total = int(job.duration * job.rate)
        base_mono = time.monotonic() + (job.start_at - time.time()) + job.phase_offset * interval
        queue: asyncio.Queue[tuple[int, bytes, float] | None] = asyncio.Queue()

        async def worker() -> None:
            while (item := await queue.get()) is not None:
                index, request, due = item
                if time.monotonic() - due > REQUEST_TIMEOUT:
                    _count(self.outcome.causes, NEVER_SENT)
                    self._record(index, 0, time.monotonic() - due, b"")
                    continue
                await self._one(index, request, due)

        workers = [asyncio.create_task(worker()) for _ in range(max(1, job.connections))]
        requests = itertools.cycle(job.requests)
        for i in range(total):
            due = base_mono + i * interval
            wait = due - time.monotonic()
            if wait > 0.0005:
                await asyncio.sleep(wait)
            index = self._slot(
                job.start_at + job.phase_offset * interval + i * interval, max(0.0, time.monotonic() - due)
            )
            queue.put_nowait((index, next(requests), due))
        for _ in workers:
            queue.put_nowait(None)
        _, unfinished = await asyncio.wait(workers, timeout=2 * REQUEST_TIMEOUT + 5)
        self.outcome.timeouts = len(unfinished)
        for task in unfinished:
            task.cancel()

    async def closed_loop(self) -> None:
        """`connections` clients send back to back until the duration is over."""
        job = self.job
        await asyncio.sleep(max(0.0, job.start_at - time.time()))
        deadline = time.monotonic() + job.duration
        requests = itertools.cycle(job.requests)

        async def client() -> None:
            while time.monotonic() < deadline:
                now = time.monotonic()
                index = self._slot(time.time(), 0.0)
                await self._one(index, next(requests), now)

        await asyncio.gather(*(client() for _ in range(job.connections)))

    async def run(self) -> Outcome:
        """Run the job and return what was measured."""
        reporter = asyncio.create_task(self._report())
        try:
            if self.job.rate is None:
                await self.closed_loop()
            else:
                await self.open_loop()
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            self.pool.close()
        return self.outcome


def retry_safe(request: bytes) -> bool:
    """Whether sending `request` twice does no harm: a GET, or a request with an idempotency key."""
    return request.startswith(b"GET ") or IDEMPOTENCY_MARK in request.partition(b"\r\n\r\n")[0].lower()


def _count(counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1


def cause(error: BaseException, idle: float | None) -> str:
    """How a request got no answer: the exception's name, and on a connection used before how long it was idle."""
    name = type(error).__name__
    if idle is None:
        return name
    bucket = next((f"< {edge:g} s" for edge in (0.1, 1, 4, 6, 60) if idle < edge), ">= 60 s")
    return f"{name} (reused, idle {bucket})"


def _main(job: Job, pipe: Connection) -> None:
    import uvloop

    uvloop.install()
    outcome = asyncio.run(_Run(job, pipe).run())
    pipe.send(("done", outcome))
    pipe.close()


class Generator:
    """One generator process running one job; results come back over a pipe."""

    def __init__(self, job: Job) -> None:
        context = mp.get_context("spawn")
        self.pipe, child = context.Pipe(duplex=False)
        self.process = context.Process(target=_main, args=(job, child), daemon=True)
        self._child_end = child
        self.done = 0
        self.errors = 0
        self.outcome: Outcome | None = None

    def start(self) -> None:
        """Start the process."""
        self.process.start()
        self._child_end.close()

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return self.process.pid

    def poll(self) -> None:
        """Read any progress or result messages waiting in the pipe."""
        while self.outcome is None and self.pipe.poll():
            try:
                message: Any = self.pipe.recv()
            except EOFError:
                self.outcome = Outcome()
                return
            if message[0] == "progress":
                self.done, self.errors = message[1], message[2]
            else:
                self.outcome = message[1]
                self.done = len(self.outcome.latency)

    @property
    def finished(self) -> bool:
        """True once the result arrived (or the process died)."""
        if self.outcome is None and not self.process.is_alive():
            self.poll()
            if self.outcome is None:
                self.outcome = Outcome()
        return self.outcome is not None

    def join(self) -> Outcome:
        """Wait for the process and return its outcome."""
        while not self.finished:
            self.pipe.poll(0.2)
            self.poll()
        self.process.join(5)
        assert self.outcome is not None
        return self.outcome


def merge(outcomes: list[Outcome]) -> Outcome:
    """Several processes' outcomes as one."""
    merged = Outcome()
    for out in outcomes:
        merged.intended.extend(out.intended)
        merged.latency.extend(out.latency)
        merged.status.extend(out.status)
        merged.accepted.extend(out.accepted)
        merged.send_lag.extend(out.send_lag)
        merged.timeouts += out.timeouts
        for name, count in out.causes.items():
            merged.causes[name] = merged.causes.get(name, 0) + count
        for name, count in out.retried.items():
            merged.retried[name] = merged.retried.get(name, 0) + count
    return merged


NOOP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n{}"
)


class _NoopProtocol(asyncio.Protocol):
    """Answers every request head with a fixed 200 (requests without bodies only)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.pending += data
        count = self.pending.count(b"\r\n\r\n")
        if count:
            self.pending = self.pending.rsplit(b"\r\n\r\n", 1)[1]
            assert self.transport is not None
            self.transport.write(NOOP_RESPONSE * count)


def _serve_noop(port: int) -> None:
    import uvloop

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_NoopProtocol, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    uvloop.install()
    asyncio.run(serve())


def start_noop_server(port: int) -> mp.process.BaseProcess:
    """A trivial HTTP server in its own process: the generator's own ceiling is measured against it."""
    process = mp.get_context("spawn").Process(target=_serve_noop, args=(port,), daemon=True)
    process.start()
    return process
