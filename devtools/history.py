"""Generated Kubernetes cluster history, loaded into a real Prometheus server.

The series are shaped like kube-state-metrics and cAdvisor output: requests and limits, usage
counters, working sets, node capacity/allocatable/labels/info, pod labels/info/owners, namespace
labels, persistent volumes, and pods that start and stop mid-window. Label values include quotes,
backslashes and non-ASCII text. With ``cluster_label`` every series carries that label, as a
central Prometheus holding several clusters would.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

PROMETHEUS = os.environ.get("PROMETHEUS_BIN", "prometheus")
PROMTOOL = os.environ.get("PROMTOOL_BIN", "promtool")
VICTORIA_METRICS = os.environ.get("VICTORIA_METRICS_BIN", "victoria-metrics")
VMCTL = os.environ.get("VMCTL_BIN", "vmctl")


@dataclass
class HistorySpec:
    clusters: Sequence[str] = ("demo-a",)
    start: int = 0
    end: int = 0
    interval: int = 60
    nodes: int = 3
    pods_per_node: int = 6
    containers_per_pod: int = 2
    cluster_label: str | None = None
    seed: int = 7
    # Recording rule output used by Finout's plain memory_usage query.
    recording_rules: bool = True
    # kube-state-metrics label allowlist in force (pods=[*],nodes=[*]).
    label_allowlist: bool = True
    # Pods set resource limits (kube_pod_container_resource_limits); many clusters' pods set none.
    limits: bool = True
    # kube-state-metrics before 2.0: requests, limits and node capacity only under their old
    # per-resource names (kube_pod_container_resource_requests_cpu_cores, ...).
    ksm_v1: bool = False
    # Samples lost: (cluster, metric name prefix, start, end) drops that cluster's samples of
    # matching series in [start, end), as a scrape target that was down.
    outages: tuple[tuple[str, str, int, int], ...] = ()
    # Scale-downs: (cluster, at) stops the pods of that cluster's second half of nodes at ``at``.
    scale_downs: tuple[tuple[str, int], ...] = ()


@dataclass
class Pod:
    cluster: str
    namespace: str
    name: str
    node: str
    born: int
    died: int
    containers: list[str]
    labels: dict[str, str]
    gpu: int = 0
    pvc: str | None = None


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items()) + "}"


@dataclass
class _Writer:
    out: TextIO
    spec: HistorySpec
    families: dict[str, list[str]] = field(default_factory=dict)

    def series(
        self, name: str, labels: dict[str, str], cluster: str, start: int, end: int, values: Iterator[float]
    ) -> None:
        if self.spec.cluster_label:
            labels = {**labels, self.spec.cluster_label: cluster}
        head = name + _labels(labels) + " "
        step = self.spec.interval
        lost = [(a, b) for c, prefix, a, b in self.spec.outages if c == cluster and name.startswith(prefix)]
        points = zip(range(start, end, step), values, strict=False)
        lines = [f"{head}{v:.6g} {t}\n" for t, v in points if not any(a <= t < b for a, b in lost)]
        self.families.setdefault(name, []).append("".join(lines))

    def flush(self) -> None:
        for name in sorted(self.families):
            for chunk in self.families[name]:
                self.out.write(chunk)
        self.out.write("# EOF\n")


_V1_SUFFIX = {"cpu": "cpu_cores", "memory": "memory_bytes", "pods": "pods"}


def _const(value: float) -> Iterator[float]:
    while True:
        yield value


def _counter(rng: random.Random, rate: float) -> Iterator[float]:
    total = rng.random() * 1000
    while True:
        yield total
        total += rate * (0.5 + rng.random())


def _gauge(rng: random.Random, base: float) -> Iterator[float]:
    while True:
        yield base * (0.8 + 0.4 * rng.random())


def pods_for(spec: HistorySpec, cluster: str, rng: random.Random) -> list[Pod]:
    pods: list[Pod] = []
    span = spec.end - spec.start
    teams = ["payments", 'the "core" team', "café-ops", "back\\slash"]
    for n in range(spec.nodes):
        node = f"ip-10-0-{n}-1.{cluster}.internal"
        for p in range(spec.pods_per_node):
            born, died = spec.start, spec.end
            kind = (n * spec.pods_per_node + p) % 5
            if kind == 1:  # starts mid-window
                born = spec.start + (rng.randrange(span // spec.interval) * spec.interval)
            elif kind == 2:  # stops mid-window
                died = spec.start + max(1, rng.randrange(span // spec.interval)) * spec.interval
            for scaled, at in spec.scale_downs:
                if scaled == cluster and n >= spec.nodes // 2:
                    died = max(born + spec.interval, min(died, at))
            namespace = ["default", "payments", "kube-system"][p % 3]
            pods.append(
                Pod(
                    cluster=cluster,
                    namespace=namespace,
                    name=f"app-{n}-{p}-{rng.randrange(16**5):05x}",
                    node=node,
                    born=born,
                    died=died,
                    containers=[f"c{c}" for c in range(spec.containers_per_pod)],
                    labels={"app": f"app-{p}", "team": teams[p % len(teams)]},
                    gpu=1 if p == 0 else 0,
                    pvc=f"data-{n}-{p}" if p % 4 == 3 else None,
                )
            )
    return pods


def write_openmetrics(spec: HistorySpec, out: TextIO) -> int:
    """Write the history as OpenMetrics text (for promtool); return the number of series."""
    writer = _Writer(out, spec)
    count = 0
    for cluster in spec.clusters:
        rng = random.Random(f"{spec.seed}-{cluster}")
        pods = pods_for(spec, cluster, rng)
        nodes = sorted({p.node for p in pods})
        s, e = spec.start, spec.end
        for i, node in enumerate(nodes):
            for resource, unit, cap in (("cpu", "core", 8.0), ("memory", "byte", 32e9), ("pods", "integer", 110.0)):
                base = {"node": node, "resource": resource, "unit": unit}
                for kind, value in (("capacity", cap), ("allocatable", cap * 0.9)):
                    name = f"kube_node_status_{kind}"
                    if spec.ksm_v1:
                        writer.series(f"{name}_{_V1_SUFFIX[resource]}", {"node": node}, cluster, s, e, _const(value))
                    else:
                        writer.series(name, base, cluster, s, e, _const(value))
                count += 2
            node_labels = {"node": node}
            if spec.label_allowlist:
                node_labels |= {
                    "label_node_kubernetes_io_instance_type": "m5.2xlarge",
                    "label_topology_kubernetes_io_zone": f"us-east-1{'abc'[i % 3]}",
                }
            writer.series("kube_node_labels", node_labels, cluster, s, e, _const(1))
            provider = f"aws:///us-east-1{'abc'[i % 3]}/i-0{i:015x}"
            writer.series(
                "kube_node_info",
                {"node": node, "provider_id": provider, "kubelet_version": "v1.30.2"},
                cluster,
                s,
                e,
                _const(1),
            )
            count += 2
        for namespace in sorted({p.namespace for p in pods}):
            writer.series(
                "kube_namespace_labels", {"namespace": namespace, "label_team": namespace}, cluster, s, e, _const(1)
            )
            count += 1
        for pod in pods:
            ps, pe = pod.born, pod.died
            ident = {"namespace": pod.namespace, "pod": pod.name}
            pod_labels = dict(ident)
            if spec.label_allowlist:
                pod_labels |= {f"label_{k}": v for k, v in pod.labels.items()}
            writer.series("kube_pod_labels", pod_labels, cluster, ps, pe, _const(1))
            owner = pod.name.rsplit("-", 1)[0]
            pod_ip = f"10.1.{rng.randrange(256)}.{rng.randrange(256)}"
            info = {**ident, "node": pod.node, "host_ip": "10.0.0.1", "pod_ip": pod_ip}
            info |= {"created_by_kind": "ReplicaSet", "created_by_name": owner}
            writer.series("kube_pod_info", info, cluster, ps, pe, _const(1))
            owned = {**ident, "owner_kind": "ReplicaSet", "owner_name": owner, "owner_is_controller": "true"}
            writer.series("kube_pod_owner", owned, cluster, ps, pe, _const(1))
            count += 3
            for container in pod.containers:
                cid = {**ident, "container": container, "node": pod.node}
                for resource, unit, req in (("cpu", "core", 0.25), ("memory", "byte", 256e6)):
                    typed = {**cid, "resource": resource, "unit": unit}
                    kinds = (("requests", req), ("limits", req * 2)) if spec.limits else (("requests", req),)
                    for kind, value in kinds:
                        name = f"kube_pod_container_resource_{kind}"
                        if spec.ksm_v1:
                            writer.series(f"{name}_{_V1_SUFFIX[resource]}", cid, cluster, ps, pe, _const(value))
                        else:
                            writer.series(name, typed, cluster, ps, pe, _const(value))
                    count += 2
                if pod.gpu and container == "c0":
                    writer.series(
                        "kube_pod_container_resource_requests",
                        {**cid, "resource": "nvidia_com_gpu", "unit": "integer"},
                        cluster,
                        ps,
                        pe,
                        _const(pod.gpu),
                    )
                    count += 1
                cad = {**ident, "container": container, "instance": pod.node, "id": f"/kubepods/{pod.name}/{container}"}
                writer.series(
                    "container_cpu_usage_seconds_total", cad, cluster, ps, pe, _counter(rng, 0.2 * spec.interval)
                )
                writer.series("container_memory_working_set_bytes", cad, cluster, ps, pe, _gauge(rng, 200e6))
                count += 2
                if spec.recording_rules:
                    rule = {**ident, "container": container, "node": pod.node, "instance": pod.node}
                    writer.series(
                        "node_namespace_pod_container:container_memory_working_set_bytes",
                        rule,
                        cluster,
                        ps,
                        pe,
                        _gauge(rng, 200e6),
                    )
                    count += 1
            net = {**ident, "instance": pod.node, "interface": "eth0"}
            writer.series(
                "container_network_receive_bytes_total", net, cluster, ps, pe, _counter(rng, 5e4 * spec.interval)
            )
            writer.series(
                "container_network_transmit_bytes_total", net, cluster, ps, pe, _counter(rng, 3e4 * spec.interval)
            )
            count += 2
            if pod.pvc:
                pvc = {"namespace": pod.namespace, "persistentvolumeclaim": pod.pvc}
                volume = f"pvc-{pod.name}"
                writer.series(
                    "kube_persistentvolumeclaim_info",
                    {**pvc, "storageclass": "gp3", "volumename": volume},
                    cluster,
                    ps,
                    pe,
                    _const(1),
                )
                writer.series(
                    "kube_persistentvolumeclaim_resource_requests_storage_bytes", pvc, cluster, ps, pe, _const(20e9)
                )
                writer.series(
                    "kube_persistentvolume_capacity_bytes", {"persistentvolume": volume}, cluster, ps, pe, _const(20e9)
                )
                writer.series(
                    "kube_pod_spec_volumes_persistentvolumeclaims_info",
                    {**ident, "volume": "data", **pvc},
                    cluster,
                    ps,
                    pe,
                    _const(1),
                )
                count += 4
    writer.flush()
    return count


def build_tsdb(spec: HistorySpec, directory: Path) -> Path:
    """Generate the history and turn it into TSDB blocks under ``directory/data``."""
    directory.mkdir(parents=True, exist_ok=True)
    text = directory / "history.om"
    with text.open("w", encoding="utf-8") as out:
        write_openmetrics(spec, out)
    data = directory / "data"
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(text), str(data)],
        check=True,
        capture_output=True,
    )
    text.unlink()
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server we started; kill it if it does not exit within 10 s."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.2)


@dataclass
class PrometheusServer:
    data: Path
    port: int = 0
    route_prefix: str = ""
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    extra_args: Sequence[str] = ()
    retention: str = "100y"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" + (f"/{self.route_prefix}" if self.route_prefix else "")

    def start(self) -> PrometheusServer:
        self.port = self.port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="finout-prom-"))
        config = self.workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
        args = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
            *self.extra_args,
        ]
        if self.route_prefix:
            args.append(f"--web.route-prefix=/{self.route_prefix}")
            args.append(f"--web.external-url=http://127.0.0.1:{self.port}/{self.route_prefix}")
        log = (self.workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"{self.url}/-/ready")
        except TimeoutError:
            self.stop()
            raise RuntimeError((self.workdir / "prometheus.log").read_text()[-2000:]) from None
        return self

    def stop(self) -> None:
        stop_process(self.process)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class VictoriaMetricsServer:
    """Debian's single-node VictoriaMetrics on loopback, holding the history of ``blocks`` (the
    promtool blocks a :class:`PrometheusServer` serves), imported with its ``vmctl``."""

    blocks: Path
    port: int = 0
    extra_args: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VictoriaMetricsServer:
        self.port = self.port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="finout-vm-"))
        args = [
            VICTORIA_METRICS,
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-loggerLevel=ERROR",
            *self.extra_args,
        ]
        log = (self.workdir / "victoria-metrics.log").open("wb")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"{self.url}/health")
            self._import()
        except (TimeoutError, RuntimeError):
            self.stop()
            raise
        return self

    def _import(self) -> None:
        """The blocks, copied (a TSDB folder opens in one server only), through vmctl, which insists
        on a terminal: ``script`` gives it one."""
        assert self.workdir is not None
        copy = self.workdir / "blocks"
        shutil.copytree(self.blocks, copy, ignore=shutil.ignore_patterns("lock", "wal", "chunks_head"))
        command = f"{VMCTL} prometheus --prom-snapshot={copy} --vm-addr={self.url} -s --vm-disable-progress-bar"
        done = subprocess.run(
            ["script", "-qc", command, "/dev/null"], capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode or "Import finished" not in done.stdout:
            raise RuntimeError(f"vmctl did not import the history:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=60):
            pass

    def stop(self) -> None:
        stop_process(self.process)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def serving_copy(tsdb: Path, **options: Any) -> Iterator[PrometheusServer]:
    """A second Prometheus (with other flags) over a copy of ``tsdb``: a TSDB opens in one server only."""
    workdir = Path(tempfile.mkdtemp(prefix="finout-tsdb-copy-"))
    copy = workdir / "data"
    shutil.copytree(tsdb, copy, ignore=shutil.ignore_patterns("lock", "wal", "chunks_head"))
    server = PrometheusServer(copy, **options).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
