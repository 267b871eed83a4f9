"""`export k8s`: strict schema validation for two Kubernetes versions, golden files, property
checks over the rendered objects, and every bad input refused with exit 2 and nothing written.

Regenerate the golden files after an intended change with
`DEVSTACK_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_k8s.py -k golden`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import kubernetes_validate
import pytest
import yaml

from devstack.cli import main
from devstack.declare.checks import (
    CheckTarget,
    Completed,
    ExecCommand,
    ReadinessCheck,
    TcpConnect,
)
from devstack.declare.spec import Condition, Dependency, Mount, Service, Stack
from devstack.k8s import NoKubernetesEquivalent, Rendered, RenderOptions, render, secret_forms
from devstack.k8s.export import MARKER, ExportOptions, check_image, export_k8s, write_manifests
from devstack.recipes import EXAMPLE_PASSWORD
from devstack.usecases import Project
from tests.unit.helpers import declare_stack

from .helpers import SEED_STACK, settings

# An older Kubernetes still in providers' (extended) support, and the newest the package ships.
K8S_VERSIONS = ["1.33.0", "1.37.0"]
API_IMAGE = "registry.example.com/app/api:1.0"
GOLDEN = Path(__file__).parent / "golden" / "k8s"
UPDATE_GOLDEN = os.environ.get("DEVSTACK_UPDATE_GOLDEN") == "1"
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
SPECIAL_PASSWORD = "p@ss:w/rd%1 é"


# --- building stacks and renders ----------------------------------------------------------------


def project(tmp_path: Path, text: str = "") -> Project:
    """The declared stack for a `.env` with `text` (the process environment is ignored)."""
    s = settings(tmp_path, text)
    return Project(s, declare_stack(s))


def seed_only(stack: Stack) -> Stack:
    """The declared stack without its migrations job and worker: Postgres, Redis, the API."""
    api = stack.service("api")
    api = replace(api, depends_on=tuple(d for d in api.depends_on if d.service != "migrate"))
    return replace(stack, services=(stack.service("postgres"), stack.service("redis"), api))


def with_jobs(stack: Stack) -> Stack:
    """The seed with a synthetic Celery worker and one-shot migration from the API's image:
    exercises Jobs, waiting for them, and workers with other checks than the declared ones."""
    stack = seed_only(stack)
    api = stack.service("api")
    migrate = Service(
        name="migrate",
        image=api.image,
        build=api.build,
        command=("alembic", "upgrade", "head"),
        environment=api.environment,
        one_shot=True,
        readiness=Completed(),
        depends_on=(Dependency("postgres"),),
    )
    worker = Service(
        name="worker",
        image=api.image,
        build=api.build,
        command=("celery", "-A", "service.worker", "worker"),
        environment=api.environment,
        readiness=ExecCommand(("celery", "-A", "service.worker", "inspect", "ping")),
        depends_on=(
            Dependency("postgres"),
            Dependency("redis"),
            Dependency("migrate", Condition.COMPLETED),
        ),
    )
    api = replace(api, depends_on=(*api.depends_on, Dependency("migrate", Condition.COMPLETED)))
    services = (stack.service("postgres"), stack.service("redis"), migrate, api, worker)
    return replace(stack, services=services)


def options(**overrides: Any) -> RenderOptions:
    return RenderOptions(**{"namespace": "demo", "api_image": API_IMAGE, **overrides})


def export(tmp_path: Path, text: str = "", **overrides: Any) -> Rendered:
    tmp_path.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {"out": tmp_path / "k8s", "api_image": API_IMAGE, **overrides}
    return export_k8s(project(tmp_path, text), ExportOptions(**values))


def documents(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file, object) for every Kubernetes object (the kustomization is not one)."""
    for name, text in rendered.files.items():
        if name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(text):
            yield name, document


def objects(rendered: Rendered, kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents(rendered) if doc["kind"] == kind]


def pod_specs(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in documents(rendered):
        if doc["kind"] in WORKLOADS:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


@dataclass(frozen=True)
class Case:
    """One render the property checks run over."""

    name: str
    jobs: bool = False
    secrets_from_env: bool = False
    text: str = ""


CASES = [
    Case("default"),
    Case("with-jobs", jobs=True),
    Case("from-env", secrets_from_env=True, text=f"POSTGRES_PASSWORD={SPECIAL_PASSWORD}\n"),
    Case(
        "jobs-from-env",
        jobs=True,
        secrets_from_env=True,
        text=f"POSTGRES_PASSWORD={SPECIAL_PASSWORD}\n",
    ),
]


def render_case(tmp_path: Path, case: Case) -> Rendered:
    p = project(tmp_path, case.text)
    stack = declare_stack(replace(p.settings, dev_mode=False))
    if case.jobs:
        stack = with_jobs(stack)
    return render(stack, options(secrets_from_env=case.secrets_from_env, replicas=2))


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case_render(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Case, Rendered]:
    case: Case = request.param
    return case, render_case(tmp_path, case)


# --- strict schema validation ---------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_passes_strict_validation(
    version: str, case_render: tuple[Case, Rendered]
) -> None:
    _, rendered = case_render
    checked = 0
    for name, document in documents(rendered):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {document['kind']} {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 7


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_strict_validation_rejects_an_unknown_field(version: str, tmp_path: Path) -> None:
    """The validator is really strict: a misspelt field fails (what a typo in k8s.py would)."""
    deployment = objects(export(tmp_path), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


# --- golden files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [False, True], ids=["default", "with-jobs"])
def test_golden_render(jobs: bool, tmp_path: Path) -> None:
    """The default render (and one with a worker and a migration Job), byte for byte."""
    if jobs:
        rendered = render_case(tmp_path, Case("with-jobs", jobs=True))
        folder = GOLDEN / "with-jobs"
    else:
        rendered = export(tmp_path)
        folder = GOLDEN / "default"
    if UPDATE_GOLDEN:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, text in rendered.files.items():
            (folder / name).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}
    assert sorted(rendered.files) == sorted(expected)
    for name, text in rendered.files.items():
        assert text == expected[name], f"{name} differs from {folder / name}"


def test_render_is_deterministic(tmp_path: Path) -> None:
    """Same declaration, same bytes: also from another checkout path, and after a re-render."""
    first = export(tmp_path / "a")
    second = export(tmp_path / "b")
    assert first.files == second.files
    assert render_case(tmp_path, CASES[1]).files == render_case(tmp_path, CASES[1]).files


# --- properties -----------------------------------------------------------------------------------


def test_every_secret_key_referenced_exists(case_render: tuple[Case, Rendered]) -> None:
    _, rendered = case_render
    (secret,) = objects(rendered, "Secret")
    keys = set(secret["stringData"])
    referenced = set()
    for _, pod in pod_specs(rendered):
        for container in all_containers(pod):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"]
                    referenced.add(ref["key"])
    assert referenced and referenced <= keys
    assert keys == referenced  # and no key is unused


def test_every_config_map_referenced_exists(case_render: tuple[Case, Rendered]) -> None:
    _, rendered = case_render
    maps = {m["metadata"]["name"] for m in objects(rendered, "ConfigMap")}
    for _, pod in pod_specs(rendered):
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in maps


def test_every_service_selects_a_workload_port(case_render: tuple[Case, Rendered]) -> None:
    _, rendered = case_render
    workloads = [d for _, d in documents(rendered) if d["kind"] in {"Deployment", "StatefulSet"}]
    services = objects(rendered, "Service")
    assert {s["metadata"]["name"] for s in services} >= {"postgres", "redis", "api"}
    for service in services:
        selector = service["spec"]["selector"].items()
        matches = [
            w for w in workloads if selector <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, service["metadata"]["name"]
        (workload,) = matches
        assert workload["spec"]["selector"]["matchLabels"].items() <= (
            workload["spec"]["template"]["metadata"]["labels"].items()
        )
        names = {
            p["name"]: p["containerPort"]
            for c in workload["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert names[port["targetPort"]] == port["port"]


def test_every_probe_port_is_a_declared_container_port(case_render: tuple[Case, Rendered]) -> None:
    _, rendered = case_render
    probes = 0
    for _, pod in pod_specs(rendered):
        for container in pod["containers"]:
            ports = {p["containerPort"] for p in container.get("ports", [])}
            names = {p["name"] for p in container.get("ports", [])}
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = container.get(kind)
                if probe is None:
                    continue
                probes += 1
                handler = probe.get("httpGet") or probe.get("tcpSocket")
                if handler:
                    assert handler["port"] in ports | names, (container["name"], kind)
                else:
                    assert probe["exec"]["command"]
    assert probes >= 8


def test_no_password_outside_the_secret(tmp_path: Path, case_render: tuple[Case, Rendered]) -> None:
    case, rendered = case_render
    password = SPECIAL_PASSWORD if case.text else EXAMPLE_PASSWORD
    forms = secret_forms(password)
    assert quote(password, safe="") in forms
    for name, text in rendered.files.items():
        if name != "secret.yaml":
            assert not any(form in text for form in forms), name
    assert not any(form in rendered.secret_hint for form in forms)
    (secret,) = objects(rendered, "Secret")
    data = secret["stringData"]
    url = data["AI_AGENTS_DATABASE_URL"]
    if case.secrets_from_env:
        assert data["POSTGRES_PASSWORD"] == password
        assert f":{quote(password, safe='')}@postgres:5432/" in url
    else:
        assert data["POSTGRES_PASSWORD"] == "<POSTGRES_PASSWORD>"
        assert "<POSTGRES_PASSWORD, percent-encoded>" in url
    # never in a ConfigMap, never in a plain `env` value
    for config in objects(rendered, "ConfigMap"):
        assert "AI_AGENTS_DATABASE_URL" not in config["data"]
        assert "POSTGRES_PASSWORD" not in config["data"]


def test_production_command_without_dev_mounts(case_render: tuple[Case, Rendered]) -> None:
    _, rendered = case_render
    text = "".join(rendered.files.values())
    assert "--reload" not in text and "hostPath" not in text and "/app/service" not in text
    (api,) = [
        d
        for _, d in documents(rendered)
        if d["metadata"]["name"] == "api" and d["kind"] == "Deployment"
    ]
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == API_IMAGE
    assert container["args"] == [
        "uvicorn",
        "service.main:app",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert api["spec"]["replicas"] == 2  # --replicas applies to the HTTP service
    config = {c["metadata"]["name"]: c["data"] for c in objects(rendered, "ConfigMap")}
    assert config["api-config"]["AI_AGENTS_ENVIRONMENT"] == "production"


def test_stateful_services_keep_their_data(case_render: tuple[Case, Rendered]) -> None:
    _, rendered = case_render
    sets = {s["metadata"]["name"]: s for s in objects(rendered, "StatefulSet")}
    assert set(sets) == {"postgres", "redis"}
    for stateful in sets.values():
        assert stateful["spec"]["replicas"] == 1
        (claim,) = stateful["spec"]["volumeClaimTemplates"]
        (container,) = stateful["spec"]["template"]["spec"]["containers"]
        # the claim holds the data; the pod's own volumes are scratch space and secret files
        claimed = [m["name"] for m in container["volumeMounts"]]
        volumes = {v["name"] for v in stateful["spec"]["template"]["spec"]["volumes"]}
        assert claimed[0] == claim["metadata"]["name"] and set(claimed[1:]) == volumes
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    redis = sets["redis"]["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"] == ["redis-server", "--appendonly", "yes"]
    postgres = sets["postgres"]["spec"]["template"]["spec"]
    assert postgres["securityContext"]["fsGroup"] == postgres["securityContext"]["runAsUser"]


def test_probes_follow_the_declared_checks(case_render: tuple[Case, Rendered]) -> None:
    case, rendered = case_render
    containers = {c["name"]: c for _, pod in pod_specs(rendered) for c in pod["containers"]}
    api = containers["api"]
    assert api["readinessProbe"]["httpGet"] == {"path": "/api/v1/ready", "port": 8000}
    assert api["livenessProbe"]["httpGet"] == {"path": "/api/v1/live", "port": 8000}
    assert containers["postgres"]["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    assert containers["redis"]["readinessProbe"]["exec"]["command"][0] == "redis-cli"
    assert containers["redis"]["readinessProbe"]["exec"]["command"][-1] == "ping"
    assert containers["redis"]["readinessProbe"]["periodSeconds"] == 10
    if case.jobs:
        worker = containers["worker"]
        assert worker["readinessProbe"]["exec"]["command"][-2:] == ["inspect", "ping"]
        assert "livenessProbe" not in worker  # its readiness looks at the broker too
        assert "readinessProbe" not in containers["migrate"]


def test_dependencies_are_waited_for_like_up(case_render: tuple[Case, Rendered]) -> None:
    _, rendered = case_render
    pods = dict(pod_specs(rendered))
    jobs = {j["metadata"]["name"] for j in objects(rendered, "Job")}
    waits = {name: [c["name"] for c in pod.get("initContainers", [])] for name, pod in pods.items()}
    assert waits["postgres"] == waits["redis"] == []
    expected = ["wait-for-postgres", "wait-for-redis"]
    assert waits["api"] == [*expected, "wait-for-migrate"]  # the declared stack has jobs too
    (postgres_wait,) = [
        c for c in pods["api"]["initContainers"] if c["name"] == "wait-for-postgres"
    ]
    assert "SELECT 1" in postgres_wait["command"][-1]  # a login, as up does, not a TCP connect
    # the declared stack has a migrations Job too, as does the synthetic one
    (job,) = jobs
    assert waits[job] == ["wait-for-postgres"]
    for name in ("api", "worker"):
        (waiter,) = [c for c in pods[name]["initContainers"] if c["name"] == "wait-for-migrate"]
        assert waiter["command"][-1] == f"job/{job}"
        assert pods[name]["serviceAccountName"] == "devstack-job-waiter"
        assert pods[name]["automountServiceAccountToken"] is False
        app = pods[name]["containers"][0]
        # only the waiter sees the token
        assert "kube-api-access" not in {m["name"] for m in app["volumeMounts"]}
    (role,) = objects(rendered, "Role")
    assert role["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}
    ]


def test_security_labels_and_resources(case_render: tuple[Case, Rendered]) -> None:
    _, rendered = case_render
    for _, doc in documents(rendered):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "demo"
        assert labels["devstack.project"] == "demo"
        assert labels["app.kubernetes.io/managed-by"] == "devstack"
        assert doc["metadata"]["namespace"] == "demo"
        if doc["kind"] in WORKLOADS:
            template = doc["spec"]["template"]["metadata"]["labels"]
            assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(template)
    for name, pod in pod_specs(rendered):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in all_containers(pod):
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": True,
            }
            assert set(container["resources"]) == {"requests", "limits"}
        if name in {"api", "worker"} or name.startswith("migrate-"):
            assert pod["securityContext"]["runAsUser"] == 10001


def test_kustomization_lists_every_manifest(case_render: tuple[Case, Rendered]) -> None:
    case, rendered = case_render
    kustomization = yaml.safe_load(rendered.files["kustomization.yaml"])
    listed = set(kustomization["resources"])
    others = set(rendered.files) - {"kustomization.yaml"}
    if case.secrets_from_env:
        assert listed == others and rendered.secret_hint == ""
    else:
        # placeholders are never applied over a Secret the user created
        assert listed == others - {"secret.yaml"}
        assert rendered.secret_hint.startswith("kubectl -n demo create secret generic ")
        assert "\n" not in rendered.secret_hint
    assert kustomization["namespace"] == "demo"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_the_directory(tmp_path: Path) -> None:
    """kubectl's own kustomize reads the directory (no cluster needed)."""
    rendered = render_case(tmp_path, Case("jobs-from-env", jobs=True, secrets_from_env=True))
    out = tmp_path / "out"
    out.mkdir()
    for name, text in rendered.files.items():
        (out / name).write_text(text)
    built = subprocess.run(
        ["kubectl", "kustomize", str(out)], capture_output=True, text=True, timeout=60, check=True
    )
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built.stdout))
    assert kinds.count("StatefulSet") == 2 and "Job" in kinds and "Secret" in kinds


# --- the command line -----------------------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project dir with a `.env`, and no devstack settings in the process environment."""
    for key in list(os.environ):
        if key.startswith(("DEVSTACK_", "POSTGRES_", "AI_AGENTS_")):
            monkeypatch.delenv(key)
    (tmp_path / ".env").write_text("DEVSTACK_PROJECT=demo\n")
    (tmp_path / "stack.py").write_text(SEED_STACK.read_text())
    return tmp_path


def run_export(checkout: Path, *args: str) -> int:
    return main(["--project-dir", str(checkout), "export", "k8s", *args])


def test_export_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "python -m devstack export k8s --api-image" in out and "--secrets-from-env" in out


def test_stale_files_of_the_previous_export_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    write_manifests(out, {"a.yaml": "a: 1\n", "b.yaml": "b: 1\n"})
    write_manifests(out, {"a.yaml": "a: 2\n"})
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.yaml"]
    listing = json.loads((out / MARKER).read_text())
    assert list(listing["files"]) == ["a.yaml"]


def test_cli_writes_the_default_render(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = checkout / "k8s"
    assert run_export(checkout, "--api-image", API_IMAGE, "--out", f"{out}/") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("kubectl -n demo create secret generic devstack-secrets ")
    written = {p.name: p.read_text() for p in out.iterdir() if p.name != MARKER}
    assert written == {p.name: p.read_text() for p in (GOLDEN / "default").iterdir()}
    # a second export over its own files is fine, and changes nothing
    assert run_export(checkout, "--api-image", API_IMAGE, "--out", str(out)) == 0
    assert {p.name: p.read_text() for p in out.iterdir() if p.name != MARKER} == written


def assert_refused(
    checkout: Path, capsys: pytest.CaptureFixture[str], words: str, *args: str
) -> str:
    before = sorted(p.relative_to(checkout) for p in checkout.rglob("*"))
    if not any(a.startswith("--api-image") for a in args) and words != "--api-image":
        args = (*args, "--api-image", API_IMAGE)
    assert run_export(checkout, "--out", str(checkout / "k8s"), *args) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert sorted(p.relative_to(checkout) for p in checkout.rglob("*")) == before
    return err


def test_missing_api_image_says_it_must_be_pullable(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = assert_refused(checkout, capsys, "--api-image")
    assert "registry" in err and "cluster" in err


@pytest.mark.parametrize(
    "reference",
    ["Registry/App:1", "app:", "app:1:2", "-app", "app@sha256:abc", "a b", "app/", "app:-x"],
)
def test_invalid_image_reference(
    reference: str, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(checkout, capsys, "not a valid image reference", f"--api-image={reference}")


@pytest.mark.parametrize(
    "reference",
    [
        "api",
        "app/api:1.0",
        "localhost:5000/app/api:1.0",
        "Registry.Example.com/team/api-x_y:v1.2.3-rc.1",
        "[::1]:5000/api@sha256:" + "a" * 64,
        "registry.example.com/app/api:1.0@sha256:" + "0" * 64,
    ],
)
def test_valid_image_references(reference: str) -> None:
    assert check_image(reference, "--api-image") == reference


@pytest.mark.parametrize("namespace", ["Demo", "my_ns", "-demo", "demo-", "a" * 64, "a.b"])
def test_namespace_must_be_a_dns_label(
    namespace: str, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(checkout, capsys, "not a valid Kubernetes namespace", f"--namespace={namespace}")


def test_replicas_must_be_positive(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_export(checkout, "--api-image", API_IMAGE, "--replicas", "0")
    assert exit_info.value.code == 2
    assert not (checkout / "k8s").exists()


def test_out_dir_with_foreign_files_is_refused_unless_forced(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = checkout / "k8s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_refused(checkout, capsys, "notes.txt")
    assert run_export(checkout, "--api-image", API_IMAGE, "--out", str(out), "--force") == 0
    assert (out / "notes.txt").read_text() == "mine"  # --force overwrites ours, deletes nothing
    assert (out / "api.yaml").exists()


def test_a_hand_edited_manifest_is_not_overwritten(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = checkout / "k8s"
    assert run_export(checkout, "--api-image", API_IMAGE, "--out", str(out)) == 0
    capsys.readouterr()
    (out / "api.yaml").write_text((out / "api.yaml").read_text() + "# my edit\n")
    assert_refused(checkout, capsys, "api.yaml")
    assert (out / "api.yaml").read_text().endswith("# my edit\n")


def test_out_must_be_a_directory(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (checkout / "k8s").write_text("a file")
    assert_refused(checkout, capsys, "is not a directory")


def test_secret_named_variables_go_to_the_secret(tmp_path: Path) -> None:
    rendered = export(tmp_path, "AI_AGENTS_OPENAI_API_KEY=sk-123456\nAI_AGENTS_LOG_LEVEL=debug\n")
    (secret,) = objects(rendered, "Secret")
    assert secret["stringData"]["AI_AGENTS_OPENAI_API_KEY"] == "<AI_AGENTS_OPENAI_API_KEY>"
    config = {c["metadata"]["name"]: c["data"] for c in objects(rendered, "ConfigMap")}
    assert config["api-config"]["AI_AGENTS_LOG_LEVEL"] == "debug"
    assert "sk-123456" not in "".join(rendered.files.values())


def test_secrets_from_env_refuses_the_example_password(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(checkout, capsys, "example POSTGRES_PASSWORD", "--secrets-from-env")


def test_secrets_from_env_fills_the_secret(checkout: Path) -> None:
    (checkout / ".env").write_text(f"DEVSTACK_PROJECT=demo\nPOSTGRES_PASSWORD={SPECIAL_PASSWORD}\n")
    out = checkout / "k8s"
    assert (
        run_export(checkout, "--api-image", API_IMAGE, "--out", str(out), "--secrets-from-env") == 0
    )
    secret = yaml.safe_load((out / "secret.yaml").read_text())
    assert secret["stringData"]["POSTGRES_PASSWORD"] == SPECIAL_PASSWORD
    assert "secret.yaml" in yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]


def test_a_password_inside_another_setting_is_refused(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (checkout / ".env").write_text("DEVSTACK_PROJECT=demo\nPOSTGRES_PASSWORD=devstack\n")
    assert_refused(checkout, capsys, "POSTGRES_PASSWORD also appears in plain text")


# --- what has no Kubernetes equivalent ------------------------------------------------------------


class PortKnock(ReadinessCheck):
    """A check the renderer does not know."""

    def check(self, target: CheckTarget) -> None:
        """Never used here."""

    def describe(self) -> str:
        """What it checks."""
        return "knock on 1234"


def refused(stack: Stack, *words: str) -> None:
    with pytest.raises(NoKubernetesEquivalent) as info:
        render(stack, options())
    assert info.value.exit_code == 2
    for word in words:
        assert word in info.value.message


def prod_stack(tmp_path: Path) -> Stack:
    p = project(tmp_path)
    return seed_only(declare_stack(replace(p.settings, dev_mode=False)))


def test_unknown_check_is_refused_naming_the_service(tmp_path: Path) -> None:
    stack = prod_stack(tmp_path)
    redis = replace(stack.service("redis"), readiness=PortKnock())
    refused(
        replace(stack, services=(stack.service("postgres"), redis, stack.service("api"))),
        "redis",
        "knock on 1234",
        "PortKnock",
    )


def test_waiting_for_an_exec_check_from_another_pod_is_refused(tmp_path: Path) -> None:
    stack = with_jobs(prod_stack(tmp_path))
    api = replace(stack.service("api"), depends_on=(Dependency("worker"),))
    services = (*(s for s in stack.services if s.name != "api"), api)  # api after worker
    refused(replace(stack, services=services), "api waits for worker", "celery")


def test_completed_on_a_long_running_service_is_refused(tmp_path: Path) -> None:
    stack = prod_stack(tmp_path)
    redis = replace(stack.service("redis"), readiness=Completed())
    refused(
        replace(stack, services=(stack.service("postgres"), redis, stack.service("api"))),
        "redis",
        "not a one-shot",
    )


def test_a_one_shot_with_a_named_volume_is_refused(tmp_path: Path) -> None:
    stack = with_jobs(prod_stack(tmp_path))
    migrate = replace(stack.service("migrate"), mounts=(Mount("demo_cache", "/cache", "volume"),))
    services = tuple(migrate if s.name == "migrate" else s for s in stack.services)
    refused(replace(stack, services=services), "migrate", "one-shot", "demo_cache")


def test_a_dev_bind_mount_is_dropped_with_a_note(tmp_path: Path) -> None:
    stack = project(tmp_path).stack  # dev mode: ./service bind-mounted
    rendered = render(stack, options())
    assert any("bind mount /app/service dropped" in note for note in rendered.notes)
    assert "hostPath" not in "".join(rendered.files.values())


def test_a_tcp_check_is_a_tcp_socket_probe(tmp_path: Path) -> None:
    stack = prod_stack(tmp_path)
    redis = replace(stack.service("redis"), readiness=TcpConnect(6379))
    rendered = render(replace(stack, services=(stack.service("postgres"), redis)), options())
    containers = {c["name"]: c for _, pod in pod_specs(rendered) for c in pod["containers"]}
    assert containers["redis"]["readinessProbe"]["tcpSocket"] == {"port": 6379}
