"""`export k8s` applied to a real kube-apiserver (etcd + kube-apiserver, no nodes): every
object is created server-side in a namespace enforcing PodSecurity `restricted`, with no
warning, and a second apply of the same output changes nothing. Hostile values of every
variable that reaches a manifest go through the same path."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.apiserver import HOW_TO_GET, ApiServer, Applied, find_assets, running

REPO_ROOT = Path(__file__).resolve().parents[2]
API_IMAGE = "registry.example.com/app/api@sha256:" + "a" * 64
OWN_PREFIXES = ("DEVSTACK_", "POSTGRES_", "AI_AGENTS_")


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One etcd + kube-apiserver for the module (about 25 s to start)."""
    assets = find_assets()
    if assets is None:
        if os.environ.get("CI") == "true":
            pytest.fail(HOW_TO_GET)
        pytest.skip(HOW_TO_GET)
    with running(assets, tmp_path_factory.mktemp("apiserver")) as server:
        yield server


def export(
    out: Path, values: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The real CLI's `export k8s` of this repo's stack, `values` in its environment (which
    overrides .env, and carries any character a .env line could not)."""
    env_file = out.parent / f"{out.name}.env"
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env.update(NO_COLOR="1", COLUMNS="200", **values)
    command = [sys.executable, "-m", "devstack", "--project-dir", str(REPO_ROOT)]
    command += ["--env-file", str(env_file), "export", "k8s", "--api-image", API_IMAGE]
    result = subprocess.run(
        [*command, "--out", str(out), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"export exited {result.returncode}:\n{result.stderr}")
    return result


def state(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {key: item["metadata"]["resourceVersion"] for key, item in objects.items()}


def apply_twice(server: ApiServer, directory: Path, namespace: str) -> dict[str, dict[str, Any]]:
    """Apply the export in `directory` server-side into a fresh `restricted` namespace, twice:
    every object is created without a warning, every pod template passes PodSecurity
    `restricted` as a Pod, and the second apply changes nothing. Returns the objects."""
    server.restricted_namespace(namespace)
    first = server.apply(directory)
    assert first.returncode == 0, first.stderr
    assert first.warnings == [], first.stderr
    created = server.objects(namespace)
    expected = expected_objects(directory)
    assert expected <= set(created), f"not created: {sorted(expected - set(created))}"
    assert server.pods_admitted(namespace, created) == []
    second: Applied = server.apply(directory)
    assert second.returncode == 0, second.stderr
    assert second.warnings == [], second.stderr
    after = server.objects(namespace)
    changed = sorted(k for k, v in state(after).items() if state(created).get(k) != v)
    assert changed == [], f"the second apply changed {changed}"
    return after


def expected_objects(directory: Path) -> set[str]:
    """`KIND/NAME` of every document in the export's files."""
    import yaml

    names = set()
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                names.add(f"{document['kind']}/{document['metadata']['name']}")
    return names


def namespace_for(label: str) -> str:
    return f"t-{label}-{secrets.token_hex(3)}"


def test_default_export_applies_twice_without_change(apiserver: ApiServer, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    namespace = namespace_for("default")
    export(out, {}, "--namespace", namespace)
    objects = apply_twice(apiserver, out, namespace)
    kinds = {key.partition("/")[0] for key in objects}
    assert {"Deployment", "StatefulSet", "Job", "ConfigMap", "Secret", "Service"} <= kinds


def test_export_with_the_monitoring_group_applies_twice_without_change(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    """`--with monitoring`: Prometheus (its derived configuration as a ConfigMap mounted at its
    path), the exporters and Grafana apply too; every service with metrics carries the
    conventional scrape annotations and a named metrics port its Service exposes."""
    out = tmp_path / "k8s"
    namespace = namespace_for("monitoring")
    export(out, {"AI_AGENTS_METRICS": "true"}, "--namespace", namespace, "--with", "monitoring")
    objects = apply_twice(apiserver, out, namespace)
    for name in ("prometheus", "postgres-exporter", "redis-exporter", "grafana"):
        assert any(key.endswith(f"/{name}") for key in objects), name
    config = objects["ConfigMap/prometheus-files"]["data"]["prometheus.yml"]
    assert '"worker:9808"' in config and '"api:8000"' in config  # Service names and ports
    worker = objects["Deployment/worker"]["spec"]["template"]
    assert worker["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert worker["metadata"]["annotations"]["prometheus.io/port"] == "9808"
    ports = objects["Service/worker"]["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in ports] == [("metrics", 9808)]
    prometheus = objects["StatefulSet/prometheus"]["spec"]["template"]["spec"]
    mounts = prometheus["containers"][0]["volumeMounts"]
    assert {"/etc/prometheus/prometheus.yml"} <= {m["mountPath"] for m in mounts}
    # without the group: none of its services
    plain = tmp_path / "plain"
    export(plain, {})
    assert not (plain / "prometheus.yaml").exists() and not (plain / "grafana.yaml").exists()


# Hostile values for every variable that reaches a manifest: YAML 1.1/1.2 and Go's readings
# of numbers, booleans and null; Kubernetes' $(VAR) expansion; quotes; unicode; long names.
HOSTILE_VALUES = [
    "0123456789",
    "01760116e9",
    "12e45",
    "7E7",
    "0o17",
    "0x1F",
    "08",
    "1e3",
    "1_000",
    "1:30",
    ".5",
    "-.inf",
    ".NaN",
    "y",
    "N",
    "yes",
    "Off",
    "true",
    "null",
    "~",
    "u$(PGPORT)x",
    "$(POD_NAMESPACE)",
    "$$",
    'it\'s "quoted"',
    "# not a comment",
    "key: value",
    "- item",
    "&anchor *alias",
    "!!str tagged",
    "@at `tick` %pct",
    "unicodé ☃ 名前",
    "a" * 63,
]
PLAIN_VARIABLES = ("POSTGRES_USER", "POSTGRES_DB", "AI_AGENTS_CUSTOM")


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize("where", ["password", "plain"])
def test_hostile_value_applies(
    apiserver: ApiServer, tmp_path: Path, where: str, value: str
) -> None:
    """A hostile value as the password, or as the user, database and a passed-through
    variable at once: applied twice without change, and read back as given (or, where
    Kubernetes expands $(VAR), as given with `$` escaped)."""
    if where == "password":
        values = {"POSTGRES_PASSWORD": value}
    else:
        values = dict.fromkeys(PLAIN_VARIABLES, value) | {"POSTGRES_PASSWORD": "a-real-pw-42"}
    out = tmp_path / "k8s"
    namespace = namespace_for(where)
    result = export(out, values, "--namespace", namespace, "--secrets-from-env", check=False)
    if where == "password" and result.returncode == 2:
        # a short password found inside other text (`y` in `ready`): refused, never leaked
        assert "POSTGRES_PASSWORD also appears in plain text" in result.stderr, result.stderr
        return
    assert result.returncode == 0, result.stderr
    objects = apply_twice(apiserver, out, namespace)
    for variable in values:
        held = [stored(item, variable) for item in objects.values()]
        assert values[variable] in held, f"{variable}: {sorted(map(repr, filter(None, held)))}"
    if where == "plain":
        pods = [
            o["spec"]["template"]["spec"] for o in objects.values() if o["kind"] == "Deployment"
        ]
        pguser = {
            e["value"]
            for pod in pods
            for c in pod.get("initContainers", [])
            for e in c.get("env", [])
            if e["name"] == "PGUSER"
        }
        assert pguser == {value.replace("$", "$$")}


def stored(item: dict[str, Any], key: str) -> str | None:
    if item["kind"] == "Secret":
        data = item.get("data", {})
        return base64.b64decode(data[key]).decode() if key in data else None
    if item["kind"] == "ConfigMap":
        return item.get("data", {}).get(key)
    return None


@pytest.mark.parametrize("name", ["1e3", "0o17", "08", "x" * 63])
def test_hostile_project_and_namespace_apply(
    apiserver: ApiServer, tmp_path: Path, name: str
) -> None:
    out = tmp_path / "k8s"
    export(out, {"DEVSTACK_PROJECT": name})  # the namespace is the project's name
    objects = apply_twice(apiserver, out, name)
    assert objects


def test_client_side_reapply_reports_unchanged(apiserver: ApiServer, tmp_path: Path) -> None:
    """`kubectl apply -k` (client-side) twice: the second reports every object `unchanged`
    (the server's defaults are in the manifests, so nothing differs from what it stored)."""
    out = tmp_path / "k8s"
    namespace = namespace_for("csa")
    export(out, {}, "--namespace", namespace)
    apiserver.restricted_namespace(namespace)
    apiserver.kubectl("apply", "-k", str(out))
    second = apiserver.kubectl("apply", "-k", str(out)).stdout.splitlines()
    assert second and all(line.endswith(" unchanged") for line in second), second
