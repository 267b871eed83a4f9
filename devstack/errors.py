"""The one exception tree for user-facing failures, and the place docker-py errors are mapped.

DevstackError                 exit 1 unless said otherwise
├── ConfigError               exit 2: bad .env / settings / arguments; nothing was touched
├── DockerUnavailable         the engine cannot be reached, or the connection to it broke
├── DockerApiError            the engine refused a request
├── ResourceConflict          a name or port is held by something that is not ours
├── ImageUnavailable          an image is missing and cannot be pulled
├── BuildFailed               the API image did not build
├── ServiceFailed             a container exited or turned unhealthy
│   └── HealthTimeout         readiness not reached before the deadline
├── LockBusy                  another devstack command works on the same project
└── MetricsUnavailable        the stack's Prometheus does not answer a query
"""

from __future__ import annotations


class DevstackError(Exception):
    """Base of every error devstack reports to the user: a message, a hint, an exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details


class ConfigError(DevstackError):
    """Invalid input: .env, settings or command line. Raised before Docker is touched."""

    exit_code = 2


class DockerUnavailable(DevstackError):
    """The Docker engine does not answer."""


class DockerApiError(DevstackError):
    """The Docker engine answered with an error (`status`: its HTTP status, when known)."""

    NOT_FOUND, CONFLICT = 404, 409

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class ResourceConflict(DevstackError):
    """A port or name that devstack needs is held by something it does not own."""


class ImageUnavailable(DevstackError):
    """An image is not present locally and the registry cannot provide it."""


class BuildFailed(DevstackError):
    """The API image failed to build."""


class ServiceFailed(DevstackError):
    """A service's container exited, or its health check failed."""


class HealthTimeout(ServiceFailed):
    """A service did not become ready before the deadline."""


class LockBusy(DevstackError):
    """Another devstack command holds this project's lock."""


class MetricsUnavailable(DevstackError):
    """The stack's Prometheus does not answer a query (down, starting, or not published)."""
