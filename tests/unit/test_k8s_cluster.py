"""What a cluster operator expects of the export: Jobs that follow their image and expire,
manifests that carry the server's defaults (a second apply changes nothing), NetworkPolicies
from the declared dependencies and a read-only root filesystem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devstack.k8s.export import ExportOptions, export_k8s
from tests.unit.test_k8s import API_IMAGE, objects, project

DIGEST = "registry.example.com/app/api@sha256:" + "b" * 64


def export(tmp_path: Path, text: str = "", **overrides: Any) -> Any:
    tmp_path.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {"out": tmp_path / "k8s", "api_image": API_IMAGE, **overrides}
    return export_k8s(project(tmp_path, text), ExportOptions(**values))


def jobs(rendered: Any) -> list[dict[str, Any]]:
    return objects(rendered, "Job")


# --- the migrations Job -------------------------------------------------------------------------


def test_the_job_name_follows_the_image_reference(tmp_path: Path) -> None:
    tagged = jobs(export(tmp_path / "a"))[0]["metadata"]["name"]
    pinned = jobs(export(tmp_path / "b", api_image=DIGEST))[0]["metadata"]["name"]
    assert tagged != pinned and tagged.startswith("migrate-")


def test_a_job_run_by_a_mutable_tag_is_warned_about(tmp_path: Path) -> None:
    notes = export(tmp_path / "a").notes
    warned = [n for n in notes if "migrate" in n and "tag" in n and "digest" in n]
    assert warned, notes
    assert not [n for n in export(tmp_path / "b", api_image=DIGEST).notes if "digest" in n]


def test_finished_jobs_expire(tmp_path: Path) -> None:
    for job in jobs(export(tmp_path)):
        assert job["spec"]["ttlSecondsAfterFinished"] > 0


# --- the server's defaults, written out -------------------------------------------------------


def test_the_server_defaults_are_written(tmp_path: Path) -> None:
    """Fields the API server fills in when left out made `kubectl apply` report `configured`
    for every workload on an unchanged re-apply: the export writes them itself."""
    rendered = export(tmp_path)
    for workload in objects(rendered, "StatefulSet"):
        for claim in workload["spec"]["volumeClaimTemplates"]:
            assert (claim["apiVersion"], claim["kind"]) == ("v1", "PersistentVolumeClaim")
            assert claim["spec"]["volumeMode"] == "Filesystem"
    projected = [
        volume["projected"]
        for kind in ("Deployment", "StatefulSet", "Job")
        for workload in objects(rendered, kind)
        for volume in workload["spec"]["template"]["spec"].get("volumes", [])
        if "projected" in volume
    ]
    assert projected
    for volume in projected:
        assert volume["defaultMode"] == 0o644
        for source in volume["sources"]:
            for item in source.get("downwardAPI", {}).get("items", []):
                assert item["fieldRef"]["apiVersion"] == "v1"


# --- hardening --------------------------------------------------------------------------------


def policies(rendered: Any) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p["spec"] for p in objects(rendered, "NetworkPolicy")}


def allowed_from(spec: dict[str, Any]) -> set[str] | None:
    """The services a policy admits (None: anyone, on its ports)."""
    sources: set[str] = set()
    for rule in spec.get("ingress", []):
        if "from" not in rule:
            return None
        sources |= {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["from"]
        }
    return sources


def test_network_policies_follow_the_declared_dependencies(tmp_path: Path) -> None:
    rendered = export(tmp_path)
    found = policies(rendered)
    workloads = {
        w["metadata"]["labels"]["app.kubernetes.io/name"]
        for kind in ("Deployment", "StatefulSet", "Job")
        for w in objects(rendered, kind)
    }
    assert set(found) == workloads
    stack = project(tmp_path).stack
    for store in ("postgres", "redis"):
        users = {s.name for s in stack.services if store in {d.service for d in s.depends_on}}
        assert users and allowed_from(found[store]) == users, store
    assert allowed_from(found["api"]) is None  # the entry point, on its port only
    assert found["api"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert "ingress" not in found["worker"] and "ingress" not in found["migrate"]  # none in
    for spec in found.values():
        assert spec["policyTypes"] == ["Ingress"]


def test_network_policies_come_from_the_stack_not_the_names(tmp_path: Path) -> None:
    from dataclasses import replace

    from devstack.k8s import render
    from tests.unit.test_k8s import options, prod_stack

    stack = prod_stack(tmp_path)  # postgres, redis, api
    api = stack.service("api")
    api = replace(api, depends_on=tuple(d for d in api.depends_on if d.service != "redis"))
    stack = replace(stack, services=tuple(api if s.name == "api" else s for s in stack.services))
    found = policies(render(stack, options()))
    assert allowed_from(found["postgres"]) == {"api"}
    assert "ingress" not in found["redis"]  # nothing depends on it any more: closed
    assert allowed_from(found["api"]) is None


def test_read_only_root_filesystem_with_writable_dirs(tmp_path: Path) -> None:
    rendered = export(tmp_path)
    for kind in ("Deployment", "StatefulSet", "Job"):
        for workload in objects(rendered, kind):
            spec = workload["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert "emptyDir" in volumes[mounts["/tmp"]], container["name"]
    postgres = objects(rendered, "StatefulSet")[0]["spec"]["template"]["spec"]
    assert "/var/run/postgresql" in {
        m["mountPath"] for m in postgres["containers"][0]["volumeMounts"]
    }


def test_volumes_keep_their_ownership_unless_it_differs(tmp_path: Path) -> None:
    for workload in objects(export(tmp_path), "StatefulSet"):
        security = workload["spec"]["template"]["spec"]["securityContext"]
        assert security["fsGroupChangePolicy"] == "OnRootMismatch"


def test_the_postgres_password_reaches_the_image_as_a_file(tmp_path: Path) -> None:
    rendered = export(tmp_path)
    postgres = objects(rendered, "StatefulSet")[0]["spec"]["template"]["spec"]
    container = postgres["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert "POSTGRES_PASSWORD" not in env
    path = env["POSTGRES_PASSWORD_FILE"]["value"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in postgres["volumes"]}
    (name,) = [n for n, v in volumes.items() if "secret" in v]
    assert path.startswith(mounts[name]["mountPath"] + "/") and mounts[name]["readOnly"]
    items = volumes[name]["secret"]["items"]
    assert [(i["key"], i["path"]) for i in items] == [("POSTGRES_PASSWORD", path.rsplit("/", 1)[1])]
