"""A PostgreSQL primary and a streaming replica, run as local processes."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fastloans_dev.devstack.system import Child, RunAs, StackError, log, service_user, wait_for

DATABASE = "fastloans"
SUPERUSER = "postgres"
# The replica's name in `primary_conninfo`, which `synchronous_standby_names` refers to.
STANDBY_NAME = "fastloans_replica"
# `synchronous_commit` values that make a commit wait for the replica (None: asynchronous replication).
SYNCHRONOUS_MODES = ("on", "remote_apply")


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, if any."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True
    )
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def ensure_installed() -> Path:
    """Install PostgreSQL from Debian's packages when no server is present."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        raise StackError("PostgreSQL server binaries not found; install them with: sudo apt-get install postgresql")
    log("installing PostgreSQL from Debian's packages (apt-get install postgresql)")
    # Keep the package from creating and starting a system cluster on port 5432.
    conf = Path("/etc/postgresql-common/createcluster.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists():
        conf.write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"], check=True, env=env)
    bindir = find_bindir()
    if bindir is None:
        raise StackError("apt-get installed postgresql but initdb was not found")
    return bindir


@dataclass
class PostgresServer:
    """One PostgreSQL server (primary or standby) in `data_dir`, listening on loopback."""

    name: str
    data_dir: Path
    port: int
    bindir: Path
    user: RunAs
    log_dir: Path
    child: Child | None = None

    @property
    def socket_dir(self) -> Path:
        """Unix socket directory, beside the data directory and owned by the server's user."""
        return self.data_dir.parent / f"{self.data_dir.name}-run"

    def url(self, database: str = DATABASE) -> str:
        """A `postgresql://` URL for `database` on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            **self.user.popen_args(),  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            detail = result.stderr.strip() or result.stdout.strip()
            raise StackError(f"{Path(argv[0]).name} failed for {self.name}: {detail}")

    @property
    def initialised(self) -> bool:
        """Whether the data directory holds a cluster."""
        return (self.data_dir / "PG_VERSION").exists()

    def init_primary(self, *, durable: bool = True) -> None:
        """initdb a new primary configured for streaming replication."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.user.chown(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            "wal_level = replica",
            "max_wal_senders = 10",
            "max_replication_slots = 10",
            "wal_keep_size = '256MB'",
            # A new WAL segment is made by writing 16 MB of zeros while every commit waits: 100-160 ms stalls every
            # few seconds under load on a young cluster (docs/performance.md). A sparse file costs a commit's flush
            # about 0.05 ms more instead.
            "wal_init_zero = off",
            "hot_standby = on",
            "hot_standby_feedback = on",
            "max_connections = 300",
            "shared_buffers = '128MB'",
            "log_min_messages = warning",
            "log_line_prefix = '%m [%p] '",
        ]
        if not durable:
            # Test clusters trade crash safety of the whole machine for speed; a process crash is still safe.
            settings += ["fsync = off", "full_page_writes = off"]
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# fastloans local stack\n" + "\n".join(settings) + "\n")
        with open(self.data_dir / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")

    def init_standby(self, primary: PostgresServer) -> None:
        """pg_basebackup from `primary`; `-R` writes standby.signal and primary_conninfo."""
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.user.chown(self.data_dir.parent)
        self._run(
            str(self.bindir / "pg_basebackup"),
            "-D",
            str(self.data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            SUPERUSER,
            "-X",
            "stream",
            "-R",
            "--checkpoint=fast",
            "-C",
            "-S",
            STANDBY_NAME,
        )
        if not (self.data_dir / "standby.signal").exists():
            raise StackError(f"pg_basebackup did not write standby.signal for {self.name}")
        os.chmod(self.data_dir, 0o700)

    def start(self) -> None:
        """Start the server process and wait until it accepts connections."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.user.chown(self.socket_dir)
        self.child = Child(
            name=self.name,
            argv=[
                str(self.bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-k",
                str(self.socket_dir),
            ],
            log_path=self.log_dir / f"{self.name}.log",
            popen_extra=self.user.popen_args(),
            stop_signal=signal.SIGINT,  # fast shutdown: roll back open transactions, checkpoint, exit
        )
        self.child.start()
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until `pg_isready` succeeds."""

        def ready() -> bool:
            if self.child is not None and not self.child.running:
                raise StackError(f"{self.name} exited during start:\n{self.child.tail()}")
            result = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
            )
            return result.returncode == 0

        wait_for(ready, timeout=timeout, what=f"{self.name} on port {self.port}")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command with psql and return its unaligned output."""
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"psql on {self.name} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def stop(self) -> None:
        """Fast shutdown."""
        if self.child is not None:
            self.child.stop(timeout=60)

    def restart(self) -> None:
        """Stop and start again on the same data directory."""
        self.stop()
        self.start()


class PostgresPair:
    """A primary and a streaming replica (`standby.signal`, physical slot).

    With `synchronous` ("on" or "remote_apply") a commit is acknowledged only once the replica
    has flushed (or applied) its WAL. `fail_over` and `rebuild_replica` lose the primary for good
    and make the replica the primary, then clone a new replica from it.
    """

    def __init__(
        self,
        root: Path,
        *,
        primary_port: int,
        replica_port: int,
        log_dir: Path,
        durable: bool = True,
        synchronous: str | None = None,
    ) -> None:
        if synchronous is not None and synchronous not in SYNCHRONOUS_MODES:
            raise StackError(f"synchronous replication must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self.bindir = ensure_installed()
        self.user = service_user()
        self.durable = durable
        self.synchronous = synchronous
        data_root = _usable_root(root, self.user)
        self.primary = PostgresServer(
            "postgres-primary", data_root / "primary", primary_port, self.bindir, self.user, log_dir
        )
        self.replica = PostgresServer(
            "postgres-replica", data_root / "replica", replica_port, self.bindir, self.user, log_dir
        )

    def start(self) -> None:
        """Initialise on first use, then start both servers and make sure the replica streams."""
        fresh = not self.primary.initialised
        if fresh:
            log("initialising the PostgreSQL primary (initdb)")
            self.primary.init_primary(durable=self.durable)
        self.primary.start()
        if fresh:
            self.primary.psql(f"CREATE DATABASE {DATABASE}")
        if fresh or not self.replica.initialised:
            log("cloning the streaming replica (pg_basebackup)")
            self._drop_slot()
            self.replica.init_standby(self.primary)
        self._set_standby_port()
        self.replica.start()
        self.wait_streaming()
        self._set_synchronous(self.synchronous is not None)

    def _set_synchronous(self, on: bool) -> None:
        # ALTER SYSTEM so that an existing data directory follows the option too.
        names = STANDBY_NAME if on else ""
        commit = self.synchronous if on and self.synchronous else "on"
        self.primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        self.primary.psql(f"ALTER SYSTEM SET synchronous_commit = '{commit}'")
        self.primary.psql("SELECT pg_reload_conf()")
        state = "sync" if on else "async"
        wait_for(
            lambda: self.primary.psql("SELECT string_agg(sync_state, ',') FROM pg_stat_replication") == state,
            timeout=30,
            what=f"the replica to be {state}hronous",
            interval=0.1,
        )

    def fail_over(self) -> None:
        """SIGKILL the primary with every backend (its machine is gone), then promote the replica.

        The promoted server acknowledges commits alone (synchronous_standby_names emptied) until
        `rebuild_replica` attaches a new standby; otherwise every write would wait for one.
        """
        self.kill_primary()
        self.promote_replica()

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and backends at once; it is never started again."""
        child = self.primary.child
        if child is not None and child.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)  # its own session: the backends die with it
            child.process.wait()

    def promote_replica(self) -> None:
        """`pg_ctl promote` the replica and wait until it takes writes; the two servers swap roles."""
        self.replica._run(str(self.bindir / "pg_ctl"), "promote", "-w", "-t", "60", "-D", str(self.replica.data_dir))
        wait_for(
            lambda: self.replica.psql("SELECT pg_is_in_recovery()") == "f",
            timeout=60,
            what=f"{self.replica.name} to leave recovery",
        )
        self.primary, self.replica = self.replica, self.primary
        if self.synchronous:
            self.primary.psql("ALTER SYSTEM SET synchronous_standby_names = ''")
            self.primary.psql("SELECT pg_reload_conf()")

    def rebuild_replica(self) -> None:
        """Clone a new replica from the (new) primary where the lost server was, start it, wait until it streams."""
        self._drop_slot()
        self.replica.init_standby(self.primary)
        self._set_standby_port()
        self.replica.start()
        self.wait_streaming()
        self._set_synchronous(self.synchronous is not None)

    def _drop_slot(self) -> None:
        self.primary.psql(
            f"SELECT pg_drop_replication_slot('{STANDBY_NAME}') FROM pg_replication_slots "
            f"WHERE slot_name = '{STANDBY_NAME}'"
        )

    def _set_standby_port(self) -> None:
        # The replica's primary_conninfo names the primary's port at clone time; keep it current.
        auto = self.replica.data_dir / "postgresql.auto.conf"
        lines = [line for line in auto.read_text().splitlines() if not line.startswith("primary_conninfo")]
        lines.append(
            f"primary_conninfo = 'host=127.0.0.1 port={self.primary.port} user={SUPERUSER} "
            f"application_name={STANDBY_NAME}'"
        )
        lines.append(f"primary_slot_name = '{STANDBY_NAME}'")
        lines = list(dict.fromkeys(lines))
        auto.write_text("\n".join(lines) + "\n")

    def wait_streaming(self, timeout: float = 60.0) -> None:
        """Wait until the primary shows the replica in `pg_stat_replication` as streaming."""
        wait_for(
            lambda: self.primary.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") != "0",
            timeout=timeout,
            what="the replica to stream from the primary",
            interval=0.2,
        )

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        lsn = self.primary.psql("SELECT pg_current_wal_lsn()")
        wait_for(
            lambda: self.replica.psql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t",
            timeout=timeout,
            what="the replica to catch up",
            interval=0.05,
        )

    def stop(self) -> None:
        """Stop the replica, then the primary."""
        self.replica.stop()
        self.primary.stop()

    @property
    def primary_url(self) -> str:
        """The primary's URL."""
        return self.primary.url()

    @property
    def replica_url(self) -> str:
        """The replica's URL."""
        return self.replica.url()

    def multi_host_url(self, *, read: bool = False) -> str:
        """Both servers in one URL: asyncpg connects to whichever is the primary (or, for `read`, a standby first)."""
        first, second = (self.replica, self.primary) if read else (self.primary, self.replica)
        attrs = "prefer-standby" if read else "read-write"
        return (
            f"postgresql://{SUPERUSER}@127.0.0.1:{first.port},127.0.0.1:{second.port}/{DATABASE}"
            f"?target_session_attrs={attrs}"
        )


def _usable_root(root: Path, user: RunAs) -> Path:
    """`root`, or (when the server's user cannot reach it) a private directory linked from it."""
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.is_symlink():
        return root.resolve()
    if not root.exists():
        root.mkdir(parents=True)
        user.chown(root)
    if user.can_use(root):
        return root
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    elsewhere = Path("/var/tmp") / f"fastloans-pg-{digest}"  # noqa: S108 - a private, per-checkout directory
    elsewhere.mkdir(parents=True, exist_ok=True)
    user.chown(elsewhere)
    root.rmdir()
    root.symlink_to(elsewhere)
    return elsewhere
