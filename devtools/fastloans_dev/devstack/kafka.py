"""Apache Kafka in KRaft mode from its Maven Central jars, run with the machine's Java."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastloans_dev.devstack.system import Child, StackError, cache_dir, log, port_in_use, wait_for

POM = Path(__file__).with_name("kafka-pom.xml")
LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
"""


def kafka_version() -> str:
    """The Kafka version the pom pins."""
    text = POM.read_text()
    return text.split("<kafka.version>", 1)[1].split("<", 1)[0]


def ensure_jars() -> Path:
    """Resolve the broker's jars with Maven into the download cache (once)."""
    libs = cache_dir() / f"kafka-{kafka_version()}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StackError("Kafka needs Java 17+ and Maven (mvn) on PATH to fetch its jars from Maven Central")
    log(f"fetching Kafka {kafka_version()} jars from Maven Central (mvn dependency:copy-dependencies)")
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"mvn could not resolve the Kafka jars:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    marker.write_text(kafka_version())
    return libs


@dataclass
class KafkaNode:
    """One KRaft node acting as broker and controller."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    log_dir: Path
    extra: dict[str, str] = field(default_factory=dict)
    listener_protocol: str = "PLAINTEXT"
    child: Child | None = None
    format_args: list[str] = field(default_factory=list)  # e.g. --add-scram credentials

    @property
    def properties_path(self) -> Path:
        """Where this node's server.properties lives."""
        return self.data_dir.parent / f"node-{self.node_id}.properties"

    def write_config(self, voters: str, *, replication: int, min_isr: int) -> None:
        """Write server.properties for a combined broker+controller."""
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"{self.listener_protocol}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"{self.listener_protocol}://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": self.listener_protocol,
            "listener.security.protocol.map": f"{self.listener_protocol}:{self.listener_protocol},CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "6",
            "default.replication.factor": str(replication),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(replication),
            "offsets.topic.num.partitions": "12",
            "transaction.state.log.replication.factor": str(replication),
            "transaction.state.log.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "unclean.leader.election.enable": "false",
            **self.extra,
        }
        self.properties_path.parent.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def format(self, libs: Path, cluster_id: str) -> None:
        """Format the log directory for the cluster (only once)."""
        if (self.data_dir / "meta.properties").exists():
            return
        result = subprocess.run(
            [
                "java",
                "-cp",
                f"{libs}/*",
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.properties_path),
                "--ignore-formatted",
                *self.format_args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")

    def start(self, libs: Path, heap: str = "512m") -> None:
        """Start the JVM."""
        log4j = self.data_dir.parent / f"log4j2-node-{self.node_id}.properties"
        log4j.write_text(LOG4J.format(log=self.log_dir / f"kafka-{self.node_id}.log", level="INFO"))
        env = {**os.environ}
        self.child = Child(
            name=f"kafka-{self.node_id}",
            argv=[
                "java",
                f"-Xms{heap}",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}",
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(self.properties_path),
            ],
            log_path=self.log_dir / f"kafka-{self.node_id}.out",
            env=env,
        )
        self.child.start()

    def wait_listening(self, timeout: float = 90.0) -> None:
        """Wait until the broker port accepts connections."""

        def up() -> bool:
            if self.child is not None and not self.child.running:
                raise StackError(f"kafka node {self.node_id} exited during start:\n{self.child.tail()}")
            return port_in_use(self.port)

        wait_for(up, timeout=timeout, what=f"Kafka node {self.node_id} on port {self.port}", interval=0.2)

    def stop(self) -> None:
        """Controlled shutdown."""
        if self.child is not None:
            self.child.stop(timeout=60)


class KafkaCluster:
    """One or more KRaft nodes (each broker and controller) on loopback."""

    def __init__(
        self,
        root: Path,
        *,
        ports: list[int],
        controller_ports: list[int],
        log_dir: Path,
        min_isr: int | None = None,
        extra: dict[str, str] | None = None,
        listener_protocol: str = "PLAINTEXT",
        heap: str = "512m",
        format_args: list[str] | None = None,
    ) -> None:
        self.root = root
        self.heap = heap
        self.replication = len(ports)
        self.min_isr = min_isr if min_isr is not None else max(1, min(2, len(ports) - 1))
        self.nodes = [
            KafkaNode(i + 1, port, cport, root / f"node-{i + 1}", log_dir, dict(extra or {}), listener_protocol)
            for i, (port, cport) in enumerate(zip(ports, controller_ports, strict=True))
        ]
        for node in self.nodes:
            node.format_args = list(format_args or [])

    @property
    def bootstrap_servers(self) -> str:
        """The comma-separated bootstrap list."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def _cluster_id(self) -> str:
        path = self.root / "cluster.id"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
        return path.read_text().strip()

    def start(self) -> None:
        """Fetch the jars if needed, format new nodes, start them all and wait for their ports."""
        libs = ensure_jars()
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        cluster_id = self._cluster_id()
        for node in self.nodes:
            node.write_config(voters, replication=self.replication, min_isr=self.min_isr)
            node.format(libs, cluster_id)
        log(f"starting Kafka (KRaft, {len(self.nodes)} node{'s' if len(self.nodes) > 1 else ''})")
        for node in self.nodes:
            node.start(libs, self.heap)
        for node in self.nodes:
            node.wait_listening()
        self._libs = libs

    def restart_node(self, index: int) -> None:
        """Stop and start one node (fault injection)."""
        self.nodes[index].stop()
        self.start_node(index)

    def kill_node(self, index: int) -> None:
        """SIGKILL one node (fault injection); `start_node` brings it back."""
        child = self.nodes[index].child
        if child is not None:
            child.kill()

    def start_node(self, index: int) -> None:
        """Start one stopped node again and wait for its port."""
        node = self.nodes[index]
        node.start(self._libs, self.heap)
        node.wait_listening()

    def stop(self) -> None:
        """Stop every node."""
        for node in reversed(self.nodes):
            node.stop()
