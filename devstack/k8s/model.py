"""The export's vocabulary: options, the rendered result, the error for what has no
Kubernetes equivalent, and the constants the manifests share."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
JOB_TTL = 7 * 24 * 3600  # a finished Job is deleted after a week (ttlSecondsAfterFinished)
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


# C0 and C1 control characters and DEL: a value holding one does not survive the way to a
# program intact (initdb keeps a password's first line), so the export refuses it.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def literal(text: str) -> str:
    """`text` where Kubernetes expands `$(VAR)` (env values, command, args, exec probes):
    every `$` doubled, so it reaches the program as written."""
    return text.replace("$", "$$")


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
