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
