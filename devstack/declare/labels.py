"""The labels that mark what devstack owns. Nothing without PROJECT=<ours> is ever changed."""

from __future__ import annotations

import json

from devstack import __version__

PROJECT = "devstack.project"
SERVICE = "devstack.service"
CONFIG_HASH = "devstack.config-hash"
CONFIG_FIELDS = "devstack.config-fields"  # per-item fingerprints, to explain a recreate
VERSION = "devstack.version"
BUILD_HASH = "devstack.converge.build-hash"  # on images: the hash of their build inputs
ONE_OFF = "devstack.one-off"  # a container run once (migrate, test): not the service's own


def project_filter(project: str) -> dict[str, list[str]]:
    """A docker-py `filters` value selecting one project's resources."""
    return {"label": [f"{PROJECT}={project}"]}


def resource_labels(project: str) -> dict[str, str]:
    return {PROJECT: project, VERSION: __version__}


def container_labels(
    project: str, service: str, fields: dict[str, str], digest: str
) -> dict[str, str]:
    return {
        **resource_labels(project),
        SERVICE: service,
        CONFIG_HASH: digest,
        CONFIG_FIELDS: json.dumps(fields, sort_keys=True, separators=(",", ":")),
    }
