"""Values on their way into the manifests: every string reads back as the same string with
YAML 1.1 (PyYAML, kubernetes-validate) and YAML 1.2 (ruamel.yaml; Go's readers in the API
server and kubectl); `$` is escaped where Kubernetes expands `$(VAR)`; control characters are
refused. The real Go parser is exercised by tests/integration/test_k8s_apiserver.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from ruamel.yaml import YAML

from devstack.k8s import dump
from devstack.k8s.export import ExportOptions, export_k8s
from tests.unit.helpers import SEED_STACK
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


# --- Kubernetes' $(VAR) expansion and control characters ----------------------------------------

# The only reference the renderer means: the Job waiter's namespace from the downward API.
MEANT = "$(POD_NAMESPACE)"


def expanded_fields(rendered: Any) -> list[str]:
    """Every string Kubernetes expands $(VAR) in: env values, command, args, exec probes."""
    found: list[str] = []
    for body in rendered.files.values():
        for document in read_11(body):
            template = (document or {}).get("spec", {}).get("template")
            if not template:
                continue
            spec = template["spec"]
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                found += [e["value"] for e in container.get("env", []) if "value" in e]
                found += container.get("command", []) + container.get("args", [])
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    found += container.get(probe, {}).get("exec", {}).get("command", [])
    return found


def test_dollar_is_escaped_where_kubernetes_expands(tmp_path: Path) -> None:
    """`POSTGRES_USER=u$(PGPORT)x` logged in as `u5432x`: every `$` Kubernetes would expand
    is written `$$` (the waiter's own `$(POD_NAMESPACE)` aside)."""
    text = "POSTGRES_USER='u$(PGPORT)x'\nPOSTGRES_DB='d$b'\nAI_AGENTS_X='$(HOME)'\n"
    options = ExportOptions(out=tmp_path / "k8s", api_image=API_IMAGE)
    rendered = export_k8s(project(tmp_path, text), options)
    fields = expanded_fields(rendered)
    assert "u$$(PGPORT)x" in fields and "d$$b" in fields  # PGUSER, PGDATABASE
    for value in fields:
        assert "$" not in value.replace("$$", "").replace(MEANT, ""), value
    # not in ConfigMaps (envFrom is not expanded): the value as given
    config = read_11(rendered.files["postgres.yaml"])[0]["data"]
    assert config["POSTGRES_USER"] == "u$(PGPORT)x"


@pytest.mark.parametrize("value", ["two\nlines", "tab\there", "bell\x07", "del\x7f", "c1\x85"])
def test_control_characters_are_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    """A password with a newline applied, but initdb kept its first line: refused (exit 2)."""
    from dataclasses import replace

    from devstack.k8s import NoKubernetesEquivalent, render
    from tests.unit.test_k8s import options, prod_stack

    stack = prod_stack(tmp_path)
    api = stack.service("api")
    api = replace(api, environment=(*api.environment, ("AI_AGENTS_BAD", value)))
    services = tuple(api if s.name == "api" else s for s in stack.services)
    with pytest.raises(NoKubernetesEquivalent) as info:
        render(replace(stack, services=services), options())
    assert info.value.exit_code == 2
    assert "AI_AGENTS_BAD" in info.value.message and "\n" not in info.value.message


def test_a_password_with_a_newline_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.test_k8s import run_export

    for key in list(os.environ):
        if key.startswith(("DEVSTACK_", "POSTGRES_", "AI_AGENTS_")):
            monkeypatch.delenv(key)
    (tmp_path / ".env").write_text("DEVSTACK_PROJECT=demo\n")
    (tmp_path / "stack.py").write_text(SEED_STACK.read_text())
    monkeypatch.setenv("POSTGRES_PASSWORD", "first-line\nsecond-line")
    out = tmp_path / "k8s"
    assert run_export(tmp_path, "--api-image", API_IMAGE, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "POSTGRES_PASSWORD" in err and "control character" in err, err
    assert not out.exists()
