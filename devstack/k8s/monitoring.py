"""What the cluster needs of a service's metrics and files: the metrics port named and reachable
(a Service port, the NetworkPolicy), the conventional `prometheus.io/*` scrape annotations on
the pod template, and the files written into the container (`Service.files`: a Prometheus
configuration, Grafana's provisioning) as a ConfigMap mounted file by file."""

from __future__ import annotations

import re

from devstack.declare.spec import Service
from devstack.k8s.model import Obj, _digest

METRICS_PORT_NAME = "metrics"
_KEY_CHARACTER = re.compile(r"[^-._a-zA-Z0-9]")


def metrics_port(service: Service, declared: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """(name, port) of the metrics port when no declared port is it already."""
    if service.metrics is None or any(p == service.metrics.port for _, p in declared):
        return []
    return [(METRICS_PORT_NAME, service.metrics.port)]


def scrape_annotations(service: Service) -> Obj:
    """The annotations an annotation-driven Prometheus scrapes a pod by (strings, all)."""
    if service.metrics is None:
        return {}
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(service.metrics.port),
        "prometheus.io/path": service.metrics.path,
    }


def files_config_map_name(service: Service) -> str:
    return f"{service.name}-files"


def _key(path: str, taken: set[str]) -> str:
    """A ConfigMap key for the file at `path` (its name, made unique)."""
    base = _KEY_CHARACTER.sub("-", path.rsplit("/", 1)[-1]) or "file"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}-{n}", n + 1
    taken.add(key)
    return key


def _keys(service: Service) -> list[str]:
    taken: set[str] = set()
    return [_key(f.path, taken) for f in service.files]


def files_config_map(service: Service, metadata: Obj) -> Obj | None:
    """The ConfigMap holding `service.files`, or None without files."""
    if not service.files:
        return None
    data = {key: f.content for key, f in zip(_keys(service), service.files, strict=True)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def files_volume(service: Service) -> tuple[list[Obj], list[Obj]]:
    """(the pod's volume, the container's mounts): each file at its path, with its mode."""
    if not service.files:
        return [], []
    name = files_config_map_name(service)
    keys = _keys(service)
    volume = {
        "name": "files",
        "configMap": {
            "name": name,
            "items": [
                {"key": key, "path": key, "mode": f.mode}
                for key, f in zip(keys, service.files, strict=True)
            ],
        },
    }
    mounts = [
        {"name": "files", "mountPath": f.path, "subPath": key, "readOnly": True}
        for key, f in zip(keys, service.files, strict=True)
    ]
    return [volume], mounts


def files_digest(service: Service) -> str:
    """Changes with any file's path, content or mode (subPath mounts are not updated in place:
    the pods must roll)."""
    return _digest([[f.path, f.content, f.mode] for f in service.files])
