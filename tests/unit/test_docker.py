"""docker/ holds together as a description of the secured 3-server cluster.

Docker does not run here, so these check what can be checked without it: the YAML and
JSON parse, every file a service mounts or the image copies exists (and is not kept out
of the build context), every image is pinned, Prometheus scrapes something that speaks
its format (the node daemons, and an exporter beside each nats-server, whose monitoring
port listens on the container's loopback only), Grafana is provisioned with that
Prometheus and dashboards over metrics the code defines, and the server configs the
compose stack generates parse with ``nats-server -t`` and say truthfully what they fsync.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.embedded import binary_version, find_binary

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
EXPORTER_IMAGE = "natsio/prometheus-nats-exporter"
EXPORTER_PORT = 7777  # the exporter's default
NATS_MONITOR = "http://127.0.0.1:8222"  # what `auth server-config` writes (loopback only)
# Images of projects we name on purpose, each pinned to a release tag.
KNOWN_IMAGES = {"nats", EXPORTER_IMAGE, "prom/prometheus", "grafana/grafana"}
CLUSTER_SAFE = (2, 10)  # sync_interval needs it
# What prometheus-nats-exporter serves for the flags compose.yaml gives it: -varz makes
# gnatsd_varz_<field> of every numeric top-level field of nats-server's /varz (the list
# below is a 2.15 server's) and -healthz gnatsd_healthz_status (0 ok, 1 not ok). A
# dashboard or rule using any other gnatsd_ name charts nothing.
VARZ_FIELDS = [
    "auth_timeout", "connections", "cores", "cpu", "gomaxprocs", "http_port", "https_port",
    "in_bytes", "in_client_bytes", "in_client_msgs", "in_msgs", "leafnodes",
    "max_connections", "max_control_line", "max_payload", "max_pending", "mem", "out_bytes",
    "out_client_bytes", "out_client_msgs", "out_msgs", "ping_interval", "ping_max", "port",
    "proto", "remotes", "routes", "slow_consumers", "stale_connections", "stalled_clients",
    "subscriptions", "tls_timeout", "total_connections", "write_deadline"]
EXPORTER_METRICS = frozenset({*(f"gnatsd_varz_{f}" for f in VARZ_FIELDS),
                              "gnatsd_healthz_status"})


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def yaml_file(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def test_every_image_is_a_known_pinned_image_or_our_dockerfile() -> None:
    for name, service in services().items():
        if "build" in service:
            build = service["build"]
            assert (DOCKER / build["context"] / build["dockerfile"]).is_file(), name
            continue
        repo, _, tag = service["image"].rpartition(":")
        assert repo in KNOWN_IMAGES, f"{name}: unknown image {service['image']}"
        assert re.fullmatch(r"v?\d+(\.\d+)*", tag), f"{name}: {service['image']} is not pinned"


def test_every_bind_mount_exists_or_is_made_by_the_auth_service() -> None:
    named = set(compose().get("volumes") or {})
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source in named:
                continue
            path = (DOCKER / source).resolve()
            if path == DOCKER / "auth":  # written by auth-init.sh on the first `up`
                assert "/docker/auth/" in (REPO / ".gitignore").read_text().split()
                continue
            assert path.exists(), f"{name} mounts {source}, which does not exist"


def test_no_toxiproxy_that_nothing_routes_through() -> None:
    """The chaos suite starts its own proxies in front of its own servers; a Toxiproxy in
    the stack that no route or client goes through only suggests a test that is not run."""
    for name, service in services().items():
        assert "toxiproxy" not in f"{name} {service.get('image', '')}", name
    assert "TOXIPROXY_URL" not in (DOCKER / "compose.yaml").read_text()


def exporters() -> dict[str, dict[str, Any]]:
    """Exporter services by the nats service whose network namespace they share."""
    found = {}
    for service in services().values():
        if str(service.get("image", "")).startswith(EXPORTER_IMAGE + ":"):
            mode = service.get("network_mode", "")
            assert mode.startswith("service:"), "the monitoring port is on loopback only"
            found[mode.removeprefix("service:")] = service
    return found


def nats_services() -> list[str]:
    return sorted(n for n, s in services().items()
                  if str(s.get("image", "")).startswith("nats:"))


def test_each_nats_server_has_an_exporter_in_its_network_namespace() -> None:
    assert nats_services() == ["nats-1", "nats-2", "nats-3"]
    found = exporters()
    assert sorted(found) == nats_services()
    for exporter in found.values():
        command = exporter["command"]
        assert command[-1] == NATS_MONITOR
        assert "-varz" in command and "-jsz=all" in command
        assert not any(flag in command for flag in ("-p", "-port"))  # default port


def scrape_targets() -> dict[str, list[str]]:
    config = yaml_file(DOCKER / "prometheus.yml")
    return {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
            for job in config["scrape_configs"]}


def test_prometheus_scrapes_only_prometheus_endpoints_that_exist() -> None:
    config = yaml_file(DOCKER / "prometheus.yml")
    assert all(job.get("metrics_path", "/metrics") == "/metrics"
               for job in config["scrape_configs"]), "nats /varz is JSON, not Prometheus"
    targets = scrape_targets()
    assert sorted(targets["nats"]) == [f"{n}:{EXPORTER_PORT}" for n in nats_services()]
    nodes = [n for n, s in services().items() if "build" in s and n.startswith("node-")]
    assert len(nodes) == 3
    for node in nodes:
        published = [p.split(":")[-1] for p in services()[node]["ports"]]
        assert f"{node}:{published[0]}" in targets["broker-agents"]
    assert len(targets["broker-agents"]) == len(nodes)


def grafana_mounts() -> dict[str, Path]:
    """Container path -> repo path of grafana's bind mounts."""
    mounts = {}
    for volume in services()["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = (DOCKER / source).resolve()
    return mounts


def provisioned(kind: str) -> list[dict[str, Any]]:
    folder = grafana_mounts()["/etc/grafana/provisioning"] / kind
    files = sorted(folder.glob("*.yaml"))
    assert files, f"nothing in {folder}"
    key = "datasources" if kind == "datasources" else "providers"
    return [item for f in files for item in yaml_file(f)[key]]


def test_grafana_has_the_prometheus_datasource() -> None:
    (source,) = provisioned("datasources")
    assert source["type"] == "prometheus" and source["isDefault"]
    assert source["url"] == "http://prometheus:9090"
    assert "9090:9090" in " ".join(services()["prometheus"]["ports"])


@cache
def defined_metrics() -> frozenset[str]:
    """Every sample name the code's prometheus_client metrics expose."""
    # prometheus_client's classes and fastmetrics' FastCounter / FastHistogram
    pattern = re.compile(r"\b(?:Fast)?(Counter|Gauge|Histogram|Summary)\(\s*\"(ba_\w+)\"")
    names: set[str] = set()
    for path in [*REPO.glob("broker_agents/**/*.py"), *REPO.glob("node/**/*.py")]:
        for kind, name in pattern.findall(path.read_text()):
            names.add(name)
            if kind in ("Histogram", "Summary"):
                names.update(f"{name}_{s}" for s in ("bucket", "sum", "count"))
    return frozenset(names)


def dashboards() -> list[Path]:
    (provider,) = provisioned("dashboards")
    folder = grafana_mounts()[provider["options"]["path"]]
    return sorted(folder.glob("*.json"))


def test_grafana_dashboards_chart_metrics_that_exist() -> None:
    """Deeper schema checks live in test_grafana_dashboards.py; here: what is charted exists
    (our metrics in the code, NATS metrics among what the exporter serves)."""
    found = dashboards()
    assert found
    nats_panels = 0
    for path in found:
        exprs = [target["expr"] for panel in json.loads(path.read_text())["panels"]
                 for target in panel.get("targets", [])]
        assert exprs, path.name
        used = {m for e in exprs for m in re.findall(r"\bba_\w+", e)}
        assert used <= defined_metrics(), f"{path.name}: {sorted(used - defined_metrics())}"
        nats = {m for e in exprs for m in re.findall(r"\bgnatsd_\w+", e)}
        assert nats <= EXPORTER_METRICS, f"{path.name}: {sorted(nats - EXPORTER_METRICS)}"
        nats_panels += bool(nats)
    assert nats_panels, "no NATS panel"


def ignored(patterns: list[str], path: str) -> bool:
    """.dockerignore's rule for our patterns: the last match wins, '!' re-includes."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", ""))
               for p in prefixes):
            result = not negate
    return result


def test_dockerignore_keeps_out_the_venv_data_caches_and_secrets() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".venv/bin/python", "data/auth/operator.nk", "docker/auth/operator.nk",
                 ".git/HEAD", ".mypy_cache/x", ".pytest_cache/x", ".ruff_cache/x",
                 ".hypothesis/x", "node/__pycache__/x.pyc", "reports/x"):
        assert ignored(patterns, path), path
    sources = re.findall(r"^COPY\s+(.+?)\s+\S+$", (DOCKER / "Dockerfile").read_text(), re.M)
    assert sources
    for source in (s for line in sources for s in line.split()):
        assert (REPO / source).exists(), source
        assert not ignored(patterns, source), f"the Dockerfile copies {source}, ignored"


@pytest.fixture(scope="module")
def stack_configs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The three server configs auth-init.sh writes on the first `docker compose up`."""
    auth = tmp_path_factory.mktemp("auth")
    cli = f"{sys.executable} -m node.cli"
    subprocess.run(["sh", str(DOCKER / "auth-init.sh")],
                   env={**os.environ, "AUTH": str(auth), "BA": cli}, cwd=REPO,
                   check=True, capture_output=True, timeout=120)
    return sorted((auth / "servers").glob("*.conf"))


def test_the_stack_configs_say_truthfully_what_they_fsync(stack_configs: list[Path]) -> None:
    binary = find_binary(CLUSTER_SAFE)
    if binary_version(binary)[:2] < CLUSTER_SAFE:
        pytest.skip("needs nats-server >= 2.10 (the dev extra installs one)")
    assert len(stack_configs) == 3
    for config in stack_configs:
        checked = subprocess.run([binary, "-t", "-c", str(config)], capture_output=True,
                                 text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        text = config.read_text()
        assert 'sync_interval: "always"' in text
        comments = " ".join(line for line in text.splitlines() if line.startswith("#"))
        assert "lazily" not in comments and "every write" in comments, comments
        assert f'http: "{NATS_MONITOR.removeprefix("http://")}"' in text
