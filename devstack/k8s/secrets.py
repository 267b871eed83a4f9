"""Secret values: every form a secret takes in a value (raw, percent-encoded), the keys of
the one Secret, and placeholders for the files that must not hold them."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from devstack.k8s.model import (
    SECRET_NAMES,
)


def secret_forms(value: str) -> set[str]:
    """`value` as it may appear in text: raw and percent-encoded (path and form styles)."""
    return {form for form in (value, quote(value, safe=""), quote_plus(value)) if form}


@dataclass
class Secrets:
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
