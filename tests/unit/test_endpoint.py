"""Which engine devstack talks to (issue 10, item 10): DOCKER_HOST, then DOCKER_CONTEXT, then
the Docker CLI config's currentContext, then the default socket, as the docker CLI decides;
contexts stored as the CLI stores them, in a temporary DOCKER_CONFIG (never ~/.docker)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from rich.console import Console

from devstack.cli.ui import status_table
from devstack.converge.status import rows_as_json, status_rows
from devstack.engine.endpoint import DEFAULT_HOST, resolve_endpoint
from devstack.errors import ConfigError

from .helpers import observed, stack


def write_context(config_dir: Path, name: str, host: str, tls: bool = False) -> None:
    """A context as `docker context create NAME --docker host=HOST` writes it."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config_dir / "contexts" / "meta" / digest / "meta.json"
    meta.parent.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": False}
    meta.write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}}))
    if tls:
        material = config_dir / "contexts" / "tls" / digest / "docker"
        material.mkdir(parents=True)
        for file in ("ca.pem", "cert.pem", "key.pem"):
            (material / file).write_text("not a real certificate")


def use_context(config_dir: Path, name: str) -> None:
    """What `docker context use NAME` writes."""
    (config_dir / "config.json").write_text(json.dumps({"auths": {}, "currentContext": name}))


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DOCKER_CONFIG, a HOME without ~/.docker, no engine variables."""
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


def test_default_when_nothing_chooses(config_dir: Path) -> None:
    endpoint = resolve_endpoint()
    assert endpoint.is_default and endpoint.host == DEFAULT_HOST
    assert dict(endpoint.client_kwargs) == {}


def test_current_context_of_the_cli_config(config_dir: Path) -> None:
    write_context(config_dir, "colima", "unix:///home/me/.colima/docker.sock")
    use_context(config_dir, "colima")
    endpoint = resolve_endpoint()
    assert (endpoint.source, endpoint.context) == ("context", "colima")
    assert endpoint.client_kwargs["base_url"] == "unix:///home/me/.colima/docker.sock"
    assert endpoint.describe() == "context colima (unix:///home/me/.colima/docker.sock)"
    assert not endpoint.is_default


def test_docker_context_overrides_current_context(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_context(config_dir, "colima", "unix:///colima.sock")
    write_context(config_dir, "desktop-linux", "unix:///desktop.sock")
    use_context(config_dir, "colima")
    monkeypatch.setenv("DOCKER_CONTEXT", "desktop-linux")
    assert resolve_endpoint().host == "unix:///desktop.sock"
    monkeypatch.setenv("DOCKER_CONTEXT", "default")
    assert resolve_endpoint().is_default


def test_docker_host_overrides_every_context(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_context(config_dir, "colima", "unix:///colima.sock")
    use_context(config_dir, "colima")
    monkeypatch.setenv("DOCKER_CONTEXT", "colima")
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2375")
    endpoint = resolve_endpoint()
    assert (endpoint.source, endpoint.host) == ("DOCKER_HOST", "tcp://10.0.0.5:2375")
    assert endpoint.client_kwargs["base_url"] == "tcp://10.0.0.5:2375"
    assert endpoint.describe() == "DOCKER_HOST (tcp://10.0.0.5:2375)"


def test_context_without_a_cli_config_file(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker context create` writes no config.json; the CLI still finds the context in
    $DOCKER_CONFIG/contexts (docker-py alone would look relative to the working directory)."""
    write_context(config_dir, "second", "unix:///second.sock", tls=True)
    monkeypatch.setenv("DOCKER_CONTEXT", "second")
    endpoint = resolve_endpoint()
    assert endpoint.host == "unix:///second.sock"
    tls = endpoint.client_kwargs["tls"]
    assert tls.ca_cert.endswith("ca.pem") and tls.cert[0].endswith("cert.pem")


def test_tls_material_through_docker_py(config_dir: Path) -> None:
    write_context(config_dir, "remote", "tcp://10.0.0.5:2376", tls=True)
    use_context(config_dir, "remote")
    tls = resolve_endpoint().client_kwargs["tls"]
    assert tls.ca_cert.endswith("ca.pem") and tls.cert[1].endswith("key.pem")


def test_a_config_outside_docker_config_is_not_read(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With DOCKER_CONFIG set, the CLI reads only that directory; docker-py would fall back to
    ~/.docker/config.json."""
    home_docker = tmp_path / "home" / ".docker"
    home_docker.mkdir()
    write_context(home_docker, "colima", "unix:///colima.sock")
    use_context(home_docker, "colima")
    assert resolve_endpoint().is_default


@pytest.mark.parametrize("where", ["DOCKER_CONTEXT", "config.json"])
def test_missing_context_is_a_config_error(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "DOCKER_CONTEXT":
        monkeypatch.setenv("DOCKER_CONTEXT", "nope")
    else:
        use_context(config_dir, "nope")
    with pytest.raises(ConfigError) as info:
        resolve_endpoint()
    assert info.value.exit_code == 2
    message = info.value.message
    assert "'nope'" in message and "does not exist" in message
    assert (where in message) and str(config_dir) in message
    assert info.value.hint and "docker context ls" in info.value.hint


def test_corrupted_context_is_a_config_error(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_context(config_dir, "broken", "unix:///x.sock")
    use_context(config_dir, "broken")
    meta = next((config_dir / "contexts" / "meta").glob("*/meta.json"))
    meta.write_text("{not json")
    with pytest.raises(ConfigError, match=r"'broken'.*cannot be read"):
        resolve_endpoint()


@pytest.mark.parametrize("host", ["foo://somewhere", "fd://"])
def test_unusable_address_is_a_config_error(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(ConfigError, match=r"DOCKER_HOST: .* is not a Docker address"):
        resolve_endpoint()
    monkeypatch.delenv("DOCKER_HOST")
    write_context(config_dir, "odd", host)
    monkeypatch.setenv("DOCKER_CONTEXT", "odd")
    with pytest.raises(ConfigError, match=r"context 'odd'.* is not a Docker address"):
        resolve_endpoint()


# --- `status` names the engine ---------------------------------------------------------------
def test_status_names_an_engine_that_is_not_the_default(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = stack(tmp_path)
    rows = status_rows(s, observed(s, {}))
    write_context(config_dir, "colima", "unix:///colima.sock")
    monkeypatch.setenv("DOCKER_CONTEXT", "colima")
    endpoint = resolve_endpoint()
    console = Console(width=200, record=True)
    console.print(status_table(s.project, rows, endpoint))
    assert "engine: context colima (unix:///colima.sock)" in console.export_text()
    assert rows_as_json(s.project, rows, endpoint)["engine"] == {
        "source": "context",
        "context": "colima",
        "host": "unix:///colima.sock",
    }


def test_status_of_the_default_engine_has_no_engine_line(config_dir: Path, tmp_path: Path) -> None:
    s = stack(tmp_path)
    rows = status_rows(s, observed(s, {}))
    endpoint = resolve_endpoint()
    console = Console(width=200, record=True)
    console.print(status_table(s.project, rows, endpoint))
    assert "engine:" not in console.export_text()
    assert rows_as_json(s.project, rows, endpoint)["engine"] == {
        "source": "default",
        "context": "default",
        "host": DEFAULT_HOST,
    }
