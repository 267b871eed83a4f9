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

from devstack.k8s.model import (
    DEFAULT_KUBECTL_IMAGE,
    NoKubernetesEquivalent,
    Rendered,
    RenderOptions,
    dns_label,
)
from devstack.k8s.render import render
from devstack.k8s.secrets import secret_forms
from devstack.k8s.yaml_out import dump

__all__ = [
    "DEFAULT_KUBECTL_IMAGE",
    "NoKubernetesEquivalent",
    "RenderOptions",
    "Rendered",
    "dns_label",
    "dump",
    "render",
    "secret_forms",
]
