"""Kubernetes manifests rendered from the stack declaration: pure and deterministic.

`render(stack, options)` turns the same `Stack` that `up` uses into plain YAML files (one per
service, plus `rbac.yaml`, `secret.yaml` and `kustomization.yaml`). Nothing here names a
concrete service; every decision follows from the declaration:

- a one-shot service -> a Job (named by a hash of its pod template: a Job's template is
  immutable, so a new image or command is a new Job); a service with a named volume -> a
  StatefulSet with a PersistentVolumeClaim per volume; any other -> a Deployment;
- a service with ports -> a Service of the same name (the hostnames `up` uses keep working);
- the readiness check -> readinessProbe; the declared liveness check (or, for a service with no
  dependencies, its readiness check) -> livenessProbe, guarded by a startupProbe with the budget
  `up` gives (`DEVSTACK_TIMEOUT`); the Docker healthcheck's timings -> the probes' timings;
- each dependency started before its dependent -> an init container that checks the
  dependency the way `up` does (Postgres login + `SELECT 1`, Redis `PING`, HTTP GET, a Job's
  completion), polling with a deadline;
- environment -> a ConfigMap per service, except passwords and every value that embeds one
  (raw or percent-encoded), which go to one Secret and reach containers as `secretKeyRef`s.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import yaml

from devstack.declare.checks import (
    Completed,
    ExecCommand,
    HttpGet,
    PostgresLogin,
    ReadinessCheck,
    RedisPing,
)
from devstack.declare.spec import Condition, Mount, Service, Stack
from devstack.errors import ConfigError

Obj = dict[str, Any]

DEFAULT_KUBECTL_IMAGE = "registry.k8s.io/kubectl:v1.33.0"
SECRET_NAME = "devstack-secrets"
WAITER = "devstack-job-waiter"  # ServiceAccount, Role and RoleBinding of the Job waiters
MANAGED_BY = "devstack"
# Environment variable names whose values are secrets (their values, wherever they appear,
# go to the Secret): passwords, tokens, keys.
SECRET_NAMES = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY|(?:^|_)KEY$")
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"

# Resource requests and limits (documented in the README): every server container, and the
# small init containers that wait for a dependency.
SERVER_RESOURCES: Obj = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}
WAIT_RESOURCES: Obj = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"cpu": "200m", "memory": "128Mi"},
}
STARTUP_PERIOD = 2  # seconds between startupProbe attempts
DEFAULT_STORAGE = "1Gi"


class NoKubernetesEquivalent(ConfigError):
    """The declaration asks for something the renderer cannot express on Kubernetes (exit 2)."""


@dataclass(frozen=True)
class RenderOptions:
    """What the cluster needs that the declaration does not say."""

    namespace: str
    api_image: str = ""  # the image of built services not in `images`
    images: Mapping[str, str] = field(default_factory=dict)  # built service -> reference
    replicas: int = 1  # for Deployments that serve through a Service
    secrets_from_env: bool = False  # real values in secret.yaml (else placeholders)
    kubectl_image: str = DEFAULT_KUBECTL_IMAGE  # what waits for Jobs
    wait_timeout: float = 120.0  # seconds a dependency may take (DEVSTACK_TIMEOUT)
    storage: str = DEFAULT_STORAGE  # size of each PersistentVolumeClaim


@dataclass(frozen=True)
class Rendered:
    """The manifests (file name -> YAML text, sorted by name), what was left out and why,
    and the one-line command that creates the Secret (empty when secret.yaml holds it)."""

    files: dict[str, str]
    notes: tuple[str, ...]
    secret_hint: str
    secret_values: tuple[str, ...] = field(repr=False)  # what must never leave secret.yaml


def render(stack: Stack, options: RenderOptions) -> Rendered:
    """The stack as Kubernetes manifests; NoKubernetesEquivalent names what cannot map."""
    return _Renderer(stack, options).render()


# --- secrets ---------------------------------------------------------------------------------


def secret_forms(value: str) -> set[str]:
    """`value` as it may appear in text: raw and percent-encoded (path and form styles)."""
    return {form for form in (value, quote(value, safe=""), quote_plus(value)) if form}


@dataclass
class _Secrets:
    """The Secret's keys and values, and the forms of every secret value to keep out of the
    other files. `labels` names each secret value for placeholders (its variable name)."""

    labels: dict[str, str] = field(default_factory=dict)  # secret value -> its variable
    data: dict[str, str] = field(default_factory=dict)  # key -> value

    def add_value(self, value: str, label: str) -> None:
        if value and value not in self.labels:
            self.labels[value] = label

    def is_secret(self, name: str, value: str) -> bool:
        if SECRET_NAMES.search(name.upper()):
            return True
        return any(form in value for raw in self.labels for form in secret_forms(raw))

    def key_for(self, service: str, name: str, value: str) -> str:
        """The key holding `value`: `name`, or `<service>.<name>` when `name` is taken."""
        for key, held in self.data.items():
            if held == value and key in {name, f"{service}.{name}"}:
                return key
        key = name if name not in self.data else f"{service}.{name}"
        self.data[key] = value
        return key

    def key_holding(self, value: str, fallback: str) -> str:
        """A key whose value is exactly `value` (added as `fallback` when none is)."""
        for key, held in sorted(self.data.items()):
            if held == value:
                return key
        self.data[fallback] = value
        return fallback

    def placeholder(self, value: str) -> str:
        """`value` with each secret in it replaced by `<NAME>`, or inside a URL (where it is
        percent-encoded) by `<NAME, percent-encoded>`."""
        if value in self.labels:
            return f"<{self.labels[value]}>"
        encoded = ", percent-encoded" if "://" in value else ""
        for raw, label in sorted(self.labels.items(), key=lambda item: -len(item[0])):
            for form in sorted(secret_forms(raw), key=len, reverse=True):
                value = value.replace(form, f"<{label}{encoded}>")
        return value

    def all_forms(self) -> tuple[str, ...]:
        return tuple(sorted({form for raw in self.labels for form in secret_forms(raw)}))


# --- the renderer ----------------------------------------------------------------------------


def dns_label(text: str) -> str:
    """`text` as a DNS-1123 label (lowercase alphanumerics and '-', at most 63)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    return label or "x"


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return value.strip("-_.") or "x"


def _digest(value: object) -> str:
    blob = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


class _Renderer:
    def __init__(self, stack: Stack, options: RenderOptions) -> None:
        self.stack = stack
        self.options = options
        self.notes: list[str] = []
        self.secrets = _Secrets()
        self.uses_job_waiter = False
        self.job_names: dict[str, str] = {}
        self._collect_secret_values()
        self._check_volumes()
        # every secret variable's key first, so the init containers find the same keys
        for name in stack.start_order():
            service = stack.service(name)
            for variable, value in self._split_environment(service)[1]:
                self.secrets.key_for(service.name, variable, value)

    # -- entry -----------------------------------------------------------------------------

    def render(self) -> Rendered:
        documents: dict[str, list[Obj]] = {}
        # Jobs first: their hashed names are what the dependents wait for.
        order = self.stack.start_order()
        for name in order:
            service = self.stack.service(name)
            if service.one_shot:
                documents[f"{name}.yaml"] = self._service_documents(service)
        for name in order:
            service = self.stack.service(name)
            if not service.one_shot:
                documents[f"{name}.yaml"] = self._service_documents(service)
        files = {name: _dump_all(HEADER, docs) for name, docs in documents.items()}
        resources = [f"{name}.yaml" for name in order]
        if self.uses_job_waiter:
            files["rbac.yaml"] = _dump_all(HEADER, self._rbac())
            resources.insert(0, "rbac.yaml")
        hint = ""
        if self.secrets.data:
            files["secret.yaml"] = _dump_all(self._secret_header(), [self._secret()])
            if self.options.secrets_from_env:
                resources.insert(0, "secret.yaml")
            else:
                hint = self._secret_hint()
        files["kustomization.yaml"] = _dump_all(HEADER, [self._kustomization(resources)])
        images = {s.name: self.image(s) for s in self.stack.services}
        self.notes.append(
            "images the cluster must pull: " + ", ".join(f"{k}={v}" for k, v in images.items())
        )
        rendered = Rendered(
            files=dict(sorted(files.items())),
            notes=tuple(self.notes),
            secret_hint=hint,
            secret_values=self.secrets.all_forms(),
        )
        self._check_no_leak(rendered)
        return rendered

    # -- checks on the declaration ------------------------------------------------------------

    def _collect_secret_values(self) -> None:
        # declared secrets, then variables named as secrets: their names label the values
        for name, value in self.stack.secrets:
            self.secrets.add_value(value, name)
        for service in self.stack.services:
            for name, value in self._environment(service):
                if SECRET_NAMES.search(name.upper()):
                    self.secrets.add_value(value, name)

    def _check_volumes(self) -> None:
        owners: dict[str, str] = {}
        for service in self.stack.services:
            for mount in service.mounts:
                if mount.kind != "volume":
                    continue
                if service.one_shot:
                    raise NoKubernetesEquivalent(
                        f"{service.name} is a one-shot service with the named volume "
                        f"{mount.source}: a Job has no PersistentVolumeClaim of its own",
                        hint="mount the volume in a long-running service instead",
                    )
                if mount.source in owners and owners[mount.source] != service.name:
                    raise NoKubernetesEquivalent(
                        f"{service.name} and {owners[mount.source]} share the named volume "
                        f"{mount.source}: a ReadWriteOnce claim belongs to one workload",
                        hint="give each service its own volume",
                    )
                owners[mount.source] = service.name

    def _check_no_leak(self, rendered: Rendered) -> None:
        plain = {n: t for n, t in rendered.files.items() if n != "secret.yaml"}
        plain["(the kubectl create secret hint)"] = rendered.secret_hint
        for name, text in plain.items():
            for form in rendered.secret_values:
                if form in text:
                    label = next(
                        (
                            lbl
                            for raw, lbl in self.secrets.labels.items()
                            if form in secret_forms(raw)
                        ),
                        "a secret",
                    )
                    raise NoKubernetesEquivalent(
                        f"the value of {label} also appears in plain text in {name}",
                        hint=f"choose a {label} that is not part of another setting (user "
                        "name, database name, project name)",
                    )

    # -- naming and labels ----------------------------------------------------------------------

    @property
    def instance(self) -> str:
        return _label_value(self.stack.project)

    def kind(self, service: Service) -> str:
        if service.one_shot:
            return "Job"
        if any(m.kind == "volume" for m in service.mounts):
            return "StatefulSet"
        return "Deployment"

    def component(self, service: Service) -> str:
        kind = self.kind(service)
        if kind == "Job":
            return "job"
        if kind == "StatefulSet":
            return "datastore"
        return "server" if service.ports else "worker"

    def selector(self, service: Service) -> Obj:
        return {"app.kubernetes.io/name": service.name, "app.kubernetes.io/instance": self.instance}

    def labels(self, service: Service | None, component: str = "") -> Obj:
        labels: Obj = {}
        if service is not None:
            labels["app.kubernetes.io/name"] = service.name
        labels["app.kubernetes.io/instance"] = self.instance
        if service is not None:
            labels["app.kubernetes.io/component"] = component or self.component(service)
        labels["app.kubernetes.io/part-of"] = self.instance
        labels["app.kubernetes.io/managed-by"] = MANAGED_BY
        labels["devstack.project"] = self.instance
        return labels

    def metadata(self, name: str, service: Service | None, component: str = "") -> Obj:
        return {
            "name": name,
            "namespace": self.options.namespace,
            "labels": self.labels(service, component),
        }

    def image(self, service: Service) -> str:
        if service.build is None:
            return service.image
        return self.options.images.get(service.name, self.options.api_image)

    def _environment(self, service: Service) -> list[tuple[str, str]]:
        # DEVSTACK_* values only steer the local stack (e.g. the migration files' digest)
        merged = {k: v for k, v in service.environment if not k.startswith("DEVSTACK_")}
        merged.update(service.cluster.environment)
        return sorted(merged.items())

    # -- one service ----------------------------------------------------------------------------

    def _service_documents(self, service: Service) -> list[Obj]:
        docs: list[Obj] = []
        plain, secret = self._split_environment(service)
        if plain:
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": self.metadata(f"{service.name}-config", service),
                    "data": dict(plain),
                }
            )
        if service.ports and not service.one_shot:
            docs.append(self._service_object(service))
        pod = self._pod_template(service, plain, secret)
        kind = self.kind(service)
        if kind == "Job":
            docs.append(self._job(service, pod))
        elif kind == "StatefulSet":
            docs.append(self._statefulset(service, pod))
        else:
            docs.append(self._deployment(service, pod))
        return docs

    def _split_environment(
        self, service: Service
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        plain: list[tuple[str, str]] = []
        secret: list[tuple[str, str]] = []
        for name, value in self._environment(service):
            (secret if self.secrets.is_secret(name, value) else plain).append((name, value))
        return plain, secret

    def _ports(self, service: Service) -> list[tuple[str, int]]:
        """(name, container port) for each distinct declared container port."""
        http = sorted(
            {
                self._check_port(service, check)
                for check in (service.readiness, service.liveness)
                if isinstance(check, HttpGet)
            }
        )
        named: list[tuple[str, int]] = []
        for port in sorted({p.container_port for p in service.ports}):
            if port in http:
                name = "http" if port == http[0] else f"http-{port}"
            else:
                name = f"tcp-{port}"
            named.append((name, port))
        return named

    def _service_object(self, service: Service) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(service.name, service),
            "spec": {
                "type": "ClusterIP",
                "selector": self.selector(service),
                "ports": [
                    {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
                    for name, port in self._ports(service)
                ],
            },
        }

    def _pod_template(
        self,
        service: Service,
        plain: list[tuple[str, str]],
        secret: list[tuple[str, str]],
    ) -> Obj:
        for mount in service.mounts:
            if mount.kind == "bind":
                self.notes.append(
                    f"{service.name}: bind mount {mount.target} dropped (dev only: the image "
                    "carries the code)"
                )
        if service.stop_signal:
            self.notes.append(
                f"{service.name}: stop signal {service.stop_signal} not rendered (the runtime "
                "sends the image's STOPSIGNAL, else SIGTERM)"
            )
        container: Obj = {"name": service.name, "image": self.image(service)}
        if service.command:
            container["args"] = list(service.command)  # Docker's command is the image's CMD
        if service.working_dir:
            container["workingDir"] = service.working_dir
        ports = self._ports(service)
        if ports:
            container["ports"] = [
                {"name": name, "containerPort": port, "protocol": "TCP"} for name, port in ports
            ]
        if plain:
            container["envFrom"] = [{"configMapRef": {"name": f"{service.name}-config"}}]
        if secret:
            container["env"] = [
                self._secret_env(name, self.secrets.key_for(service.name, name, value))
                for name, value in secret
            ]
        container.update(self._probes(service))
        container["resources"] = SERVER_RESOURCES
        container["securityContext"] = _container_security()
        mounts = [m for m in service.mounts if m.kind == "volume"]
        if mounts:
            container["volumeMounts"] = [self._volume_mount(m) for m in mounts]
        init = self._init_containers(service)
        # only the Job waiters mount a token (kubectl reads the API): the app gets none
        needs_token = any("volumeMounts" in c for c in init)
        spec: Obj = {"automountServiceAccountToken": False}
        if needs_token:
            spec["serviceAccountName"] = WAITER
        spec["securityContext"] = self._pod_security(service)
        if init:
            spec["initContainers"] = init
        spec["containers"] = [container]
        if service.one_shot:
            spec["restartPolicy"] = "Never"
        if needs_token:
            spec["volumes"] = [_token_volume()]
        metadata: Obj = {"labels": self.labels(service)}
        if plain:
            metadata["annotations"] = {"devstack/config-hash": _digest(plain)}
        return {"metadata": metadata, "spec": spec}

    def _volume_mount(self, mount: Mount) -> Obj:
        volume: Obj = {"name": self.volume_name(mount.source), "mountPath": mount.target}
        if mount.read_only:
            volume["readOnly"] = True
        return volume

    def volume_name(self, source: str) -> str:
        return dns_label(source.removeprefix(f"{self.stack.project}_"))

    def _secret_env(self, name: str, key: str) -> Obj:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}}

    def _uid(self, service: Service) -> int | None:
        if service.cluster.uid is not None:
            return service.cluster.uid
        if service.user.isdigit():
            return int(service.user)
        if service.user:
            self.notes.append(
                f"{service.name}: user {service.user!r} is not numeric: not rendered "
                "(runAsNonRoot then needs a numeric USER in the image)"
            )
        # The same build runs as the same user.
        if service.build is None:
            return None
        shared = (o.cluster.uid for o in self.stack.services if o.build == service.build)
        return next((uid for uid in shared if uid is not None), None)

    def _pod_security(self, service: Service) -> Obj:
        security: Obj = {"runAsNonRoot": True}
        uid = self._uid(service)
        if uid is not None:
            security.update(runAsUser=uid, runAsGroup=uid)
            if any(m.kind == "volume" for m in service.mounts):
                security["fsGroup"] = uid
        security["seccompProfile"] = {"type": "RuntimeDefault"}
        return security

    # -- probes ---------------------------------------------------------------------------------

    def _check_port(self, service: Service, check: HttpGet | PostgresLogin | RedisPing) -> int:
        """The container port a check targets: declared, or the one published on its port."""
        declared = {p.container_port for p in service.ports}
        wanted = check.container_port if isinstance(check, HttpGet) else 0
        if wanted:
            if wanted in declared:
                return wanted
            raise NoKubernetesEquivalent(
                f"{service.name}'s check `{check.describe()}` targets container port {wanted}, "
                f"which {service.name} does not declare",
                hint="declare the port on the service",
            )
        for port in service.ports:
            if port.host_port == check.port:
                return port.container_port
        if len(declared) == 1:
            return next(iter(declared))
        raise NoKubernetesEquivalent(
            f"{service.name}'s check `{check.describe()}` matches none of its declared ports",
            hint="declare the port the check uses",
        )

    def _handler(self, service: Service, check: ReadinessCheck) -> Obj:
        """A probe handler that checks from inside the pod what `check` checks from outside."""
        match check:
            case PostgresLogin():
                port = self._check_port(service, check)
                argv = ["pg_isready", "-h", "127.0.0.1", "-p", str(port)]
                return {"exec": {"command": [*argv, "-U", check.user, "-d", check.database]}}
            case RedisPing():
                port = self._check_port(service, check)
                return {
                    "exec": {"command": ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"]}
                }
            case HttpGet():
                return {"httpGet": {"path": check.path, "port": self._check_port(service, check)}}
            case ExecCommand():
                return {"exec": {"command": list(check.argv)}}
            case Completed():
                raise NoKubernetesEquivalent(
                    f"{service.name} declares the check `{check.describe()}` but is not a "
                    "one-shot service: a long-running pod has no completion to probe",
                    hint="declare it with one_shot=True (rendered as a Job), or give it a check "
                    "Kubernetes can probe (HttpGet, ExecCommand, ...)",
                )
            case _:
                raise NoKubernetesEquivalent(
                    f"{service.name}'s readiness check `{check.describe()}` "
                    f"({type(check).__name__}) has no Kubernetes probe equivalent",
                    hint="map it in devstack/k8s.py (_handler), or declare a check Kubernetes "
                    "can probe (HttpGet, ExecCommand, ...)",
                )

    def _probes(self, service: Service) -> Obj:
        if service.one_shot:
            if service.readiness is not None and not isinstance(service.readiness, Completed):
                self._handler(service, service.readiness)  # still refuse what cannot map
            return {}
        health = service.healthcheck
        period = math.ceil(health.interval) if health else 10
        timeout = math.ceil(health.timeout) if health else 5
        retries = health.retries if health else 3
        timings = {"periodSeconds": period, "timeoutSeconds": timeout, "failureThreshold": retries}
        probes: Obj = {}
        liveness = service.liveness
        if liveness is None and not service.depends_on:
            liveness = service.readiness  # it looks at this service only: safe to restart on
        if liveness is not None:
            startup = math.ceil(self.options.wait_timeout / STARTUP_PERIOD)
            probes["startupProbe"] = self._handler(service, liveness) | {
                "periodSeconds": STARTUP_PERIOD,
                "timeoutSeconds": timeout,
                "failureThreshold": max(startup, 1),
            }
        if service.readiness is not None:
            probes["readinessProbe"] = self._handler(service, service.readiness) | timings
        if liveness is not None:
            probes["livenessProbe"] = self._handler(service, liveness) | timings
        return probes

    # -- waiting for dependencies ---------------------------------------------------------------

    def _init_containers(self, service: Service) -> list[Obj]:
        containers: list[Obj] = []
        # Every dependency is waited for: `before_start=False` only lets a local `up` overlap
        # start-ups, while a pod's init containers are how a cluster keeps the start order.
        for dependency in service.depends_on:
            target = self.stack.service(dependency.service)
            if dependency.condition is Condition.COMPLETED and not target.one_shot:
                raise NoKubernetesEquivalent(
                    f"{service.name} waits for {target.name} to complete, but {target.name} is "
                    "not a one-shot service",
                )
            containers.append(self._wait_for(service, target))
        return containers

    def _wait_for(self, service: Service, target: Service) -> Obj:
        """An init container that returns once `target` passes its readiness check."""
        name = dns_label(f"wait-for-{target.name}")
        check = target.readiness
        timeout = math.ceil(self.options.wait_timeout)
        connect = math.ceil(target.healthcheck.timeout) if target.healthcheck else 5
        match check:
            case PostgresLogin():
                port = self._check_port(target, check)
                env = [
                    {"name": "PGHOST", "value": target.name},
                    {"name": "PGPORT", "value": str(port)},
                    self._maybe_secret("PGUSER", check.user),
                    self._maybe_secret("PGDATABASE", check.database),
                    self._secret_env(
                        "PGPASSWORD",
                        self.secrets.key_holding(check.password, f"{target.name}-password"),
                    ),
                    {"name": "PGCONNECT_TIMEOUT", "value": str(connect)},
                ]
                # the same login `up` makes: TCP, password, then SELECT 1; a refused password
                # cannot heal, so it fails at once
                body = "psql -X -w -tA -c 'SELECT 1' >/dev/null"
                fatal = "*'password authentication failed'*"
                script = _wait_script(target.name, body, timeout, fatal)
                return self._wait_container(name, self.image(target), script, env)
            case RedisPing():
                port = self._check_port(target, check)
                body = (
                    f"reply=$(redis-cli -h {target.name} -p {port} ping) || return 1; "
                    'case "$reply" in *PONG*|*NOAUTH*) return 0;; esac; echo "$reply"; return 1'
                )
                script = _wait_script(target.name, body, timeout)
                return self._wait_container(name, self.image(target), script, [])
            case HttpGet():
                port = self._check_port(target, check)
                url = shlex.quote(f"http://{target.name}:{port}{check.path}")
                body = (
                    "if command -v curl >/dev/null 2>&1; then "
                    f"curl -fsS -o /dev/null --max-time {connect} {url}; "
                    f"else wget -q -O /dev/null -T {connect} {url}; fi"
                )
                script = _wait_script(target.name, body, timeout)
                return self._wait_container(name, self.image(target), script, [])
            case Completed():
                self.uses_job_waiter = True
                job = self.job_names[target.name]
                return {
                    "name": name,
                    "image": self.options.kubectl_image,
                    "command": [
                        "kubectl",
                        "wait",
                        "--for=condition=complete",
                        f"--timeout={timeout}s",
                        "--namespace=$(POD_NAMESPACE)",
                        f"job/{job}",
                    ],
                    "env": [
                        {
                            "name": "POD_NAMESPACE",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                        }
                    ],
                    "resources": WAIT_RESOURCES,
                    "securityContext": _container_security(),
                    "volumeMounts": [
                        {"name": "kube-api-access", "mountPath": TOKEN_PATH, "readOnly": True}
                    ],
                }
            case None:
                raise NoKubernetesEquivalent(
                    f"{service.name} waits for {target.name}, which declares no readiness "
                    "check: an init container has nothing to wait for",
                    hint=f"declare a readiness check on {target.name}",
                )
            case ExecCommand():
                raise NoKubernetesEquivalent(
                    f"{service.name} waits for {target.name}, whose readiness check "
                    f"`{check.describe()}` runs inside {target.name}'s container: another pod "
                    "cannot run it",
                    hint=f"give {target.name} a check over the network (HttpGet, ...)",
                )
            case _:
                raise NoKubernetesEquivalent(
                    f"{service.name} waits for {target.name}, whose readiness check "
                    f"`{check.describe()}` ({type(check).__name__}) has no Kubernetes "
                    "equivalent",
                    hint="map it in devstack/k8s.py (_wait_for)",
                )

    def _maybe_secret(self, name: str, value: str) -> Obj:
        if self.secrets.is_secret(name, value):
            return self._secret_env(name, self.secrets.key_holding(value, name))
        return {"name": name, "value": value}

    def _wait_container(self, name: str, image: str, script: str, env: list[Obj]) -> Obj:
        container: Obj = {"name": name, "image": image, "command": ["sh", "-c", script]}
        if env:
            container["env"] = env
        container["resources"] = WAIT_RESOURCES
        container["securityContext"] = _container_security()
        return container

    # -- workloads ------------------------------------------------------------------------------

    def _deployment(self, service: Service, pod: Obj) -> Obj:
        replicas = self.options.replicas if service.ports else 1
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(service.name, service),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": self.selector(service)},
                "template": pod,
            },
        }

    def _statefulset(self, service: Service, pod: Obj) -> Obj:
        claims = [
            {
                "metadata": {
                    "name": self.volume_name(m.source),
                    "labels": self.labels(service),
                },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": self.options.storage}},
                },
            }
            for m in service.mounts
            if m.kind == "volume"
        ]
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": self.metadata(service.name, service),
            "spec": {
                "serviceName": service.name,
                "replicas": 1,  # one server owns its volume: more replicas are more databases
                "selector": {"matchLabels": self.selector(service)},
                "template": pod,
                "volumeClaimTemplates": claims,
            },
        }

    def _job(self, service: Service, pod: Obj) -> Obj:
        name = dns_label(f"{service.name}-{_digest(pod)}")
        self.job_names[service.name] = name
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self.metadata(name, service),
            "spec": {"backoffLimit": 2, "template": pod},
        }

    # -- shared objects -------------------------------------------------------------------------

    def _rbac(self) -> list[Obj]:
        metadata = self.metadata(WAITER, None)
        subject = {"kind": "ServiceAccount", "name": WAITER, "namespace": self.options.namespace}
        return [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": metadata,
                "automountServiceAccountToken": False,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": metadata,
                "rules": [
                    {
                        "apiGroups": ["batch"],
                        "resources": ["jobs"],
                        "verbs": ["get", "list", "watch"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": WAITER,
                },
                "subjects": [subject],
            },
        ]

    def _secret(self) -> Obj:
        data = dict(sorted(self.secrets.data.items()))
        if not self.options.secrets_from_env:
            data = {key: self.secrets.placeholder(value) for key, value in data.items()}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self.metadata(SECRET_NAME, None),
            "type": "Opaque",
            "stringData": data,
        }

    def _secret_header(self) -> str:
        if self.options.secrets_from_env:
            return HEADER + "# Real values from .env: keep this file out of version control.\n"
        return (
            HEADER + "# PLACEHOLDERS: not listed in kustomization.yaml. Create the Secret with\n"
            "# the `kubectl create secret` line that the export printed, or fill in this\n"
            "# file and `kubectl apply -f` it.\n"
        )

    def _secret_hint(self) -> str:
        literals = " ".join(
            shlex.quote(f"--from-literal={key}={self.secrets.placeholder(value)}")
            for key, value in sorted(self.secrets.data.items())
        )
        return f"kubectl -n {self.options.namespace} create secret generic {SECRET_NAME} {literals}"

    def _kustomization(self, resources: list[str]) -> Obj:
        return {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": self.options.namespace,
            "resources": resources,
        }


def _container_security() -> Obj:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _token_volume() -> Obj:
    """The service account token, mounted only into the init containers that wait for Jobs
    (the pod has `automountServiceAccountToken: false`: the app gets no token)."""
    return {
        "name": "kube-api-access",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ]
        },
    }


def _wait_script(what: str, body: str, timeout: int, fatal: str = "") -> str:
    """A POSIX sh loop: run `body` until it succeeds, at most `timeout` seconds; output that
    matches the case pattern `fatal` fails at once."""
    lines = [
        f"check() {{ {body}; }}",
        f"deadline=$(( $(date +%s) + {timeout} ))",
        "until out=$(check 2>&1); do",
    ]
    if fatal:
        lines.append(f'  case "$out" in {fatal}) echo "{what}: $out" >&2; exit 1;; esac')
    lines += [
        '  if [ "$(date +%s)" -ge "$deadline" ]; then',
        f'    echo "{what} not ready after {timeout}s: $out" >&2; exit 1',
        "  fi",
        "  sleep 1",
        "done",
        f'echo "{what} is ready"',
    ]
    return "\n".join(lines) + "\n"


# --- YAML ------------------------------------------------------------------------------------

HEADER = (
    "# Generated by `python -m devstack export k8s` from the stack declaration.\n"
    "# Re-run the export instead of editing: it refuses to overwrite files changed by hand.\n"
)


class _Dumper(yaml.SafeDumper):
    """Block style, sequences indented under their key, multi-line strings as `|` blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        """No `&id001` anchors: a shared dict is written out in full each time."""
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(document: Obj) -> str:
    """One document as YAML, keys in the order built (deterministic)."""
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )


def _dump_all(header: str, documents: Iterable[Obj]) -> str:
    return header + "---\n".join(dump(document) for document in documents)
