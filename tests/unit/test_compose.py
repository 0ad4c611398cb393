"""docker-compose.yml, checked without a Docker engine: the Compose specification's JSON schema,
the paths it builds from and mounts, and its agreement with the Prometheus and Grafana config."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "deploy" / "compose-spec.json"  # source and version: deploy/compose-spec.md
DASHBOARD_PROVIDERS = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE))  # safe_load resolves the << merge keys of the anchors


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services(compose).items() if s.get("command") == ["worker"]}


def test_matches_the_compose_specification(compose: dict[str, Any], validator: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_rejects_what_compose_would(compose: dict[str, Any], validator: Any) -> None:
    """The validation above means something: the schema refuses unknown or mistyped keys."""
    for mutate in (
        lambda c: c["services"]["worker-1"].update(portz=["6066:6066"]),
        lambda c: c["services"]["kafka"].update(healthcheck={"test": 1}),
        lambda c: c.update(volumez={}),
        lambda c: c["services"]["worker-1"].update(depends_on={"topics": {"condition": "x"}}),
    ):
        bad = copy.deepcopy(compose)
        mutate(bad)
        assert not validator.is_valid(bad)


def test_every_service_it_depends_on_exists(compose: dict[str, Any]) -> None:
    names = set(services(compose))
    for name, service in services(compose).items():
        assert set(service.get("depends_on", [])) <= names - {name}, name


def test_build_contexts_and_dockerfiles_exist(compose: dict[str, Any]) -> None:
    built = [s for s in services(compose).values() if "build" in s]
    assert built
    for service in built:
        context = ROOT / service["build"]["context"]
        dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), dockerfile
        # What the Dockerfile copies from the context must be there too.
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                *sources, _dest = line.split()[1:]
                for source in sources:
                    assert (context / source).exists(), f"{dockerfile}: {line}"


def test_the_image_copies_every_package_the_install_needs() -> None:
    """``pip install .`` in the image installs what it was given: every top-level package of
    the repository must be copied in (the worker's command line lives in decay_cli)."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert {"decay", "decay_kafka", "decay_cli", "stream_app", "training"} <= packages
    copied = set()
    for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(line.split()[1:-1])
    assert packages <= copied


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes", {}))
    mounts = 0
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source}"
                mounts += 1
            else:
                assert source in named, f"{name}: undeclared volume {source}"
    assert mounts >= 3  # prometheus config, grafana provisioning and dashboards


def test_prometheus_scrapes_exactly_the_workers(compose: dict[str, Any]) -> None:
    prometheus = services(compose)["prometheus"]
    (config_dir,) = [v.split(":")[0] for v in prometheus["volumes"] if ":/etc/prometheus" in v]
    config = load_yaml(ROOT / config_dir / "prometheus.yml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "decay-worker"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    want = {f"{name}:{w['environment']['DECAY_WEB_PORT']}" for name, w in workers(compose).items()}
    assert len(want) == 2
    assert targets == want
    for rule_file in config["rule_files"]:
        assert (ROOT / config_dir / rule_file).is_file()


def test_workers_reach_kafka_and_listen_outside_the_container(compose: dict[str, Any]) -> None:
    kafka = services(compose)["kafka"]["environment"]
    advertised = {a.split("://")[1] for a in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    topics_env = services(compose)["topics"]["environment"]
    for name, worker in workers(compose).items():
        env = worker["environment"]
        assert env["DECAY_BOOTSTRAP"] in advertised, name
        assert env["DECAY_WEB_HOST"] == "0.0.0.0", name
        # routed /users requests reach a worker by its service name
        assert env["DECAY_WEB_ADVERTISED_HOST"] == name, name
        shared = {k: v for k, v in env.items() if k != "DECAY_WEB_ADVERTISED_HOST"}
        assert shared == topics_env, name  # same topics, same partition count
        condition = worker["depends_on"]["topics"]["condition"]
        assert condition == "service_completed_successfully", name


def test_images_are_pinned_and_kafka_matches_the_local_broker(compose: dict[str, Any]) -> None:
    pulled = {n: s["image"] for n, s in services(compose).items() if "build" not in s}
    assert set(pulled) == {"kafka", "prometheus", "grafana"}
    for name, image in pulled.items():
        _repo, _, tag = image.rpartition(":")
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"
    pom = ET.parse(ROOT / "deploy" / "kafka" / "pom.xml").getroot()
    (version,) = [e.text for e in pom.iter() if e.tag.endswith("kafka.version")]
    assert pulled["kafka"] == f"apache/kafka:{version}"
    assert version is not None and version.startswith("4.")


def test_grafana_provisioning_points_at_the_mounted_dashboards(compose: dict[str, Any]) -> None:
    grafana = services(compose)["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    container_dashboards = mounts["./deploy/grafana/dashboards"]
    (providers,) = [load_yaml(p) for p in DASHBOARD_PROVIDERS.glob("*.yml")]
    assert [p["options"]["path"] for p in providers["providers"]] == [container_dashboards]
    (datasources,) = [load_yaml(p) for p in DATASOURCES.glob("*.yml")]
    (prometheus,) = datasources["datasources"]
    assert prometheus["url"] == "http://prometheus:9090"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy" / "grafana" / "dashboards" / Path(home).name).is_file()
    assert Path(home).parent == Path(container_dashboards)
