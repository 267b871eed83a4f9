"""The metrics port, scrape annotations and files of a service in the Kubernetes export."""

from __future__ import annotations

from devstack.declare.spec import File, Metrics, Service
from devstack.k8s.monitoring import (
    files_config_map,
    files_digest,
    files_volume,
    metrics_port,
    scrape_annotations,
)


def test_the_metrics_port_is_added_once_and_annotated_as_strings() -> None:
    worker = Service("worker", "img", metrics=Metrics(9808, "/m", "tasks"))
    assert metrics_port(worker, []) == [("metrics", 9808)]
    assert metrics_port(worker, [("http", 9808)]) == []  # already a declared port
    assert scrape_annotations(worker) == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9808",
        "prometheus.io/path": "/m",
    }
    assert scrape_annotations(Service("db", "img")) == {}


def test_files_become_one_config_map_mounted_file_by_file_with_their_modes() -> None:
    files = (File("/etc/a/config.yml", "x: 1"), File("/etc/b/config.yml", "y", 0o600))
    service = Service("p", "img", files=files)
    config_map = files_config_map(service, {"name": "p-files"})
    assert config_map is not None
    assert config_map["data"] == {"config.yml": "x: 1", "config.yml-2": "y"}
    [volume], mounts = files_volume(service)
    assert [i["mode"] for i in volume["configMap"]["items"]] == [0o644, 0o600]
    assert [(m["mountPath"], m["subPath"]) for m in mounts] == [
        ("/etc/a/config.yml", "config.yml"),
        ("/etc/b/config.yml", "config.yml-2"),
    ]
    changed = Service("p", "img", files=(files[0], File("/etc/b/config.yml", "z", 0o600)))
    assert files_digest(changed) != files_digest(service)  # a change rolls the pods
    assert files_config_map(Service("q", "img"), {}) is None
