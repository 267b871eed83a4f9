"""Values on their way into the manifests: every string reads back as the same string with
YAML 1.1 (PyYAML, kubernetes-validate) and YAML 1.2 (ruamel.yaml; Go's readers in the API
server and kubectl); `$` is escaped where Kubernetes expands `$(VAR)`; control characters are
refused. The real Go parser is exercised by tests/integration/test_k8s_apiserver.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ruamel.yaml import YAML

from devstack.k8s import dump
from devstack.k8s.export import ExportOptions, export_k8s
from tests.unit.test_k8s import API_IMAGE, project

# Plain scalars some reader takes for a number, boolean or null: YAML 1.1, YAML 1.2 (core
# schema) or go-yaml v2 (sigs.k8s.io/yaml: 1.1 booleans with y/n, 1.2 octals), and strings
# that only need quoting for their characters.
HOSTILE = [
    "01760116e9",  # a config-hash annotation that Go read as a float
    "0123456789",
    "12e45",
    "7E7",
    "0o17",
    "0x1F",
    "0b101",
    "08",
    "1e3",
    "1_000",
    "1:30",
    "+1",
    "-2.5",
    ".5",
    "5.",
    ".inf",
    "-.Inf",
    ".NaN",
    "2001-12-14",
    "y",
    "Y",
    "n",
    "N",
    "yes",
    "No",
    "on",
    "OFF",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "",
    "=",
    "<<",
    "u$(PGPORT)x",
    'it\'s "quoted"',
    "# not a comment",
    "key: value",
    "- item",
    "&anchor *alias",
    "!!str tagged",
    "@at `tick` %pct",
    "unicodé ☃ 名前",
    " leading and trailing ",
    "a" * 63,
]
YAML_12 = YAML(typ="safe", pure=True)  # the pure loader: YAML 1.2 (the C one reads 1.1)
GO_V2_BOOLEANS = {"y", "yes", "n", "no", "on", "off", "true", "false"}


def read_12(text: str) -> Any:
    return list(YAML_12.load_all(text))


def read_11(text: str) -> Any:
    return list(yaml.safe_load_all(text))


def plain_scalars(text: str) -> list[str]:
    return [
        event.value
        for event in yaml.parse(text)
        if isinstance(event, yaml.ScalarEvent) and event.style is None
    ]


@pytest.mark.parametrize("value", HOSTILE)
def test_every_string_reads_back_the_same_in_yaml_1_1_and_1_2(value: str) -> None:
    text = dump({"value": value, value or "empty": "key"})
    expected = [{"value": value, value or "empty": "key"}]
    assert read_11(text) == expected
    assert read_12(text) == expected, text
    # go-yaml v2 also reads y/n/on/off as booleans in any case: those are never plain
    assert not {s for s in plain_scalars(text) if s.lower() in GO_V2_BOOLEANS}, text


HOSTILE_ENV = {
    "POSTGRES_PASSWORD": "0123456789",
    "POSTGRES_USER": "08",
    "POSTGRES_DB": "1e3",
    "DEVSTACK_PROJECT": "1e3",
    "AI_AGENTS_CUSTOM": "N",
    "AI_AGENTS_OTHER": "0o17",
    "AI_AGENTS_FLAG": "y",
}


def test_hostile_render_reads_the_same_with_a_yaml_1_2_parser(tmp_path: Path) -> None:
    """Every file of an export with hostile values: YAML 1.2 reads what YAML 1.1 reads, type
    for type (numbers only where the manifests mean numbers)."""
    text = "".join(f"{k}={v}\n" for k, v in HOSTILE_ENV.items())
    options = ExportOptions(out=tmp_path / "k8s", api_image=API_IMAGE, secrets_from_env=True)
    rendered = export_k8s(project(tmp_path, text), options)
    for name, body in rendered.files.items():
        as_11 = json.dumps(read_11(body), sort_keys=True)
        assert json.dumps(read_12(body), sort_keys=True) == as_11, name
    secret = read_12(rendered.files["secret.yaml"])[0]
    assert secret["stringData"]["POSTGRES_PASSWORD"] == "0123456789"
    postgres = read_12(rendered.files["postgres.yaml"])[0]
    assert postgres["data"]["POSTGRES_USER"] == "08"
    assert read_12(rendered.files["kustomization.yaml"])[0]["namespace"] == "1e3"
    api = read_12(rendered.files["api.yaml"])[0]["data"]
    assert (api["AI_AGENTS_CUSTOM"], api["AI_AGENTS_FLAG"]) == ("N", "y")


def test_config_hash_annotation_is_a_string(tmp_path: Path) -> None:
    rendered = export_k8s(
        project(tmp_path), ExportOptions(out=tmp_path / "k8s", api_image=API_IMAGE)
    )
    for body in rendered.files.values():
        for document in read_12(body):
            template = document.get("spec", {}).get("template", {}) if document else {}
            for value in template.get("metadata", {}).get("annotations", {}).values():
                assert isinstance(value, str)
