"""CPU and memory of every process of the stack and of the load generator (psutil)."""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil


@dataclass
class Usage:
    """One component's figures over the whole run."""

    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    peak_process_rss_mb: float = 0.0
    processes: int = 0
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)  # time, CPU %, RSS MB, CPU s


def listening_pids() -> dict[int, int]:
    """port -> the process listening on it; for uvicorn's workers, the supervisor that started them.

    A socket shared by several processes is listed once, under one of them: with WEB_CONCURRENCY > 1
    that is one worker (a `multiprocessing` child of the gateway), so the root is its parent and
    every worker is counted.
    """
    found = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.pid or not conn.laddr or conn.laddr.port in found:
            continue
        pid = conn.pid
        try:
            process = psutil.Process(pid)
            parent = process.parent()
            if parent is not None and any("multiprocessing" in part for part in process.cmdline()):
                pid = parent.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        found[conn.laddr.port] = pid
    return found


class Monitor:
    """Samples each component's process tree: the root process and all its descendants."""

    def __init__(self, component_ports: dict[str, int]) -> None:
        self.roots: dict[str, list[psutil.Process]] = {}
        self.usage: dict[str, Usage] = {}
        self._cpu: dict[int, float] = {}
        self._last: dict[str, float] = {}
        self._started = False
        pids = listening_pids()
        for name, port in component_ports.items():
            pid = pids.get(port)
            if pid is not None:
                self.add(name, pid)

    def add(self, name: str, pid: int) -> None:
        """Sample the process tree rooted at `pid` as (part of) `name`."""
        try:
            self.roots.setdefault(name, []).append(psutil.Process(pid))
            self.usage.setdefault(name, Usage())
        except psutil.NoSuchProcess:
            pass

    def sample(self, now: float) -> None:
        """Add one sample: CPU time used since the last one, and RSS now."""
        for name, roots in list(self.roots.items()):
            procs = []
            for root in roots:
                try:
                    procs += [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
            cpu_total, rss_total, rss_max = 0.0, 0.0, 0.0
            for proc in procs:
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        rss = proc.memory_info().rss / 2**20
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                used = times.user + times.system
                # Processes there at the first sample count from then; later ones from their start.
                cpu_total += used - self._cpu.get(proc.pid, used if not self._started else 0.0)
                self._cpu[proc.pid] = used
                rss_total += rss
                rss_max = max(rss_max, rss)
            usage = self.usage[name]
            usage.cpu_seconds += cpu_total
            usage.peak_rss_mb = max(usage.peak_rss_mb, rss_total)
            usage.peak_process_rss_mb = max(usage.peak_process_rss_mb, rss_max)
            usage.processes = max(usage.processes, len(procs))
            elapsed = now - self._last.get(name, now)
            usage.samples.append((now, 100.0 * cpu_total / elapsed if elapsed > 0 else 0.0, rss_total, cpu_total))
            self._last[name] = now
        self._started = True

    def cpu_percent(self, name: str, start: float, end: float) -> float:
        """Average CPU (100 = one core) of a component between two times."""
        points = [cpu for at, cpu, _, _ in self.usage[name].samples if start < at <= end]
        return sum(points) / len(points) if points else 0.0

    def cpu_seconds(self, name: str, start: float, end: float) -> float:
        """CPU seconds a component used between two times."""
        return sum(used for at, _, _, used in self.usage[name].samples if start < at <= end)
