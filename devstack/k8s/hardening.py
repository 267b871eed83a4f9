"""What a cluster operator expects beyond running: a NetworkPolicy per workload derived from
the declared dependencies, a read-only root filesystem with empty directories where the
programs write, and secrets read from files where the image supports it."""

from __future__ import annotations

from devstack.declare.spec import Service, Stack
from devstack.k8s.model import SECRET_NAME, Obj, dns_label

TMP = "/tmp"
SECRET_FILES_DIR = "/run/secrets/devstack"
SECRET_FILES_VOLUME = "secret-files"


def dependents(stack: Stack, service: Service) -> list[Service]:
    """The services that declare a dependency on `service`, in declaration order."""
    return [s for s in stack.services if any(d.service == service.name for d in s.depends_on)]


def network_policy(stack: Stack, service: Service, metadata: Obj, selector: Obj) -> Obj:
    """Ingress to `service`'s pods. A service with data (a named volume: a database, a queue)
    on its ports from what depends on it, and from nothing else; a stateless server on its
    ports from anywhere (an Ingress controller, other namespaces); a worker or a Job from
    nothing; a metrics port from anywhere (a Prometheus in any namespace). Egress is left
    open (DNS, the API server, the dependencies)."""
    ports = [
        {"protocol": "TCP", "port": port}
        for port in sorted({p.container_port for p in service.ports})
    ]
    peers = [
        {"podSelector": {"matchLabels": selector | {"app.kubernetes.io/name": other.name}}}
        for other in dependents(stack, service)
    ]
    stateful = any(m.kind == "volume" for m in service.mounts)
    ingress: list[Obj] = []
    if ports and stateful and peers:
        ingress.append({"from": peers, "ports": ports})
    elif ports and not stateful and not service.one_shot:
        ingress.append({"ports": ports})
    if service.metrics is not None and not any(
        service.metrics.port in [p["port"] for p in rule.get("ports", [])] and "from" not in rule
        for rule in ingress
    ):  # a Prometheus in any namespace scrapes it (narrow it with a patch)
        ingress.append({"ports": [{"protocol": "TCP", "port": service.metrics.port}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        # no `ingress` at all (not an empty list, which the server drops) admits nothing
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"]}
        | ({"ingress": ingress} if ingress else {}),
    }


def writable_dirs(service: Service) -> list[tuple[str, str]]:
    """(volume name, path) of the empty directories a read-only root filesystem needs."""
    paths = [TMP, *(p for p in service.cluster.writable if p != TMP)]
    return [(dns_label(f"rw{path}"), path) for path in paths]


def secret_file_env(variable: str) -> tuple[Obj, str]:
    """The `NAME_FILE` variable pointing at the file that holds `variable`, and the file's
    name in the secret-files volume."""
    return {"name": f"{variable}_FILE", "value": f"{SECRET_FILES_DIR}/{variable}"}, variable


def secret_files_volume(items: list[tuple[str, str]], group_readable: bool) -> Obj:
    """The Secret's keys as files (key, file name): readable by the pod's fsGroup, else by
    all (the image's user is not root)."""
    mode = 0o440 if group_readable else 0o444
    return {
        "name": SECRET_FILES_VOLUME,
        "secret": {
            "secretName": SECRET_NAME,
            "defaultMode": mode,
            "items": [{"key": key, "path": path} for key, path in items],
        },
    }
