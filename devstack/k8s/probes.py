"""Readiness, liveness and startup probes from the declared checks, and the init
containers that check each dependency the way `up` does, polling with a deadline."""

from __future__ import annotations

import math
import shlex

from devstack.declare.checks import (
    Completed,
    ExecCommand,
    HttpGet,
    PostgresLogin,
    ReadinessCheck,
    RedisPing,
    TcpConnect,
)
from devstack.declare.spec import Condition, Service, Stack
from devstack.k8s.model import (
    STARTUP_PERIOD,
    TOKEN_PATH,
    WAIT_RESOURCES,
    NoKubernetesEquivalent,
    Obj,
    RenderOptions,
    dns_label,
    literal,
)
from devstack.k8s.secrets import Secrets


class Probes:
    """The renderer's probes and the init containers that wait for dependencies (a mixin of
    `_Renderer`, which provides the attributes and methods declared here)."""

    stack: Stack
    options: RenderOptions
    secrets: Secrets
    job_names: dict[str, str]
    uses_job_waiter: bool

    def image(self, service: Service) -> str:
        raise NotImplementedError

    def _secret_env(self, name: str, key: str) -> Obj:
        raise NotImplementedError

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
                argv += ["-U", literal(check.user), "-d", literal(check.database)]
                return {"exec": {"command": argv}}
            case RedisPing():
                port = self._check_port(service, check)
                return {
                    "exec": {"command": ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"]}
                }
            case HttpGet():
                return {"httpGet": {"path": check.path, "port": self._check_port(service, check)}}
            case ExecCommand():
                return {"exec": {"command": [literal(arg) for arg in check.argv]}}
            case TcpConnect():  # a listener inside the container: what the kubelet dials
                return {"tcpSocket": {"port": check.port}}
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
                    hint="map it in devstack/k8s/probes.py (_handler), or declare a check "
                    "Kubernetes can probe (HttpGet, ExecCommand, TcpConnect, ...)",
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
                            "valueFrom": {
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}
                            },
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
        return {"name": name, "value": literal(value)}

    def _wait_container(self, name: str, image: str, script: str, env: list[Obj]) -> Obj:
        command = ["sh", "-c", literal(script)]  # the shell's $(...) and $out stay the shell's
        container: Obj = {"name": name, "image": image, "command": command}
        if env:
            container["env"] = env
        container["resources"] = WAIT_RESOURCES
        container["securityContext"] = _container_security()
        return container


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


def _container_security() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


def _token_volume() -> Obj:
    """The service account token, mounted only into the init containers that wait for Jobs
    (the pod has `automountServiceAccountToken: false`: the app gets no token). The server's
    defaults (defaultMode, fieldRef's apiVersion) are written so a re-apply changes nothing."""
    return {
        "name": "kube-api-access",
        "projected": {
            "defaultMode": 0o644,
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
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }
