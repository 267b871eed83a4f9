"""Every transport failure of docker-py's stack becomes one DockerUnavailable line (issue 10,
item 4), in the one place errors are mapped; unrelated errors are left alone. The exceptions are
built as requests, urllib3 and docker-py nest them (seen on a real engine in
tests/integration/test_reliability.py)."""

from __future__ import annotations

import http.client
import socket

import docker.errors
import pytest
import requests.exceptions
import urllib3.exceptions
from docker.utils.socket import SocketError

from devstack.engine.errors import docker_errors
from devstack.engine.socket import ExecSocket
from devstack.errors import DockerApiError, DockerUnavailable


@pytest.fixture(autouse=True)
def default_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))


def aborted(reason: BaseException) -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", reason)
    )


BROKEN_READ = urllib3.exceptions.ProtocolError(
    "Connection broken: IncompleteRead(0 bytes read)", http.client.IncompleteRead(b"")
)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aborted(FileNotFoundError(2, "No such file or directory")), "cannot reach"),
        (aborted(ConnectionRefusedError(111, "Connection refused")), "cannot reach"),
        (
            requests.exceptions.ConnectionError(
                urllib3.exceptions.NewConnectionError(None, "Failed to establish")
            ),
            "cannot reach",
        ),
        (aborted(PermissionError(13, "Permission denied")), "permission denied"),
        (aborted(http.client.RemoteDisconnected("Remote end closed")), "broke"),
        (aborted(ConnectionResetError(104, "Connection reset by peer")), "broke"),
        (BROKEN_READ, "broke"),  # docker-py's build and pull streams read urllib3 directly
        (requests.exceptions.ChunkedEncodingError(BROKEN_READ), "broke"),
        (http.client.IncompleteRead(b""), "broke"),
        (SocketError("Unexpected EOF"), "broke"),
        (ConnectionResetError(104, "Connection reset by peer"), "broke"),
        (ConnectionAbortedError(103, "Software caused connection abort"), "broke"),
        (requests.exceptions.ReadTimeout("Read timed out"), "did not answer in time"),
        (
            urllib3.exceptions.ReadTimeoutError(None, "/v1.41/build", "Read timed out."),
            "did not answer in time",
        ),
        (TimeoutError("timed out"), "did not answer in time"),
        (docker.errors.DockerException("Install paramiko to use ssh://"), "cannot use"),
    ],
)
def test_transport_failures_become_one_line(raised: BaseException, expected: str) -> None:
    with pytest.raises(DockerUnavailable) as info, docker_errors("build the API image"):
        raise raised
    assert expected in info.value.message and "build the API image" in info.value.message
    assert "\n" not in info.value.message and info.value.hint
    assert info.value.exit_code == 1
    assert info.value.__cause__ is raised


def test_refusals_keep_their_status() -> None:
    response = requests.Response()
    response.status_code = 409
    with pytest.raises(DockerApiError) as info, docker_errors("create a container"):
        raise docker.errors.APIError("Conflict", response, explanation="name in use")
    assert info.value.status == 409 and "name in use" in info.value.message


@pytest.mark.parametrize(
    "raised",
    [
        ValueError("a bug"),
        FileNotFoundError(2, "a build input vanished"),
        BrokenPipeError(32, "our own stdout closed"),  # `up | head`: not the engine's fault
        KeyboardInterrupt(),
    ],
)
def test_other_errors_are_not_disguised(raised: BaseException) -> None:
    with pytest.raises(type(raised)), docker_errors("build the API image"):
        raise raised


def test_exec_socket_reset_while_reading() -> None:
    """A connection closed with data still unread reads ECONNRESET on the other end."""
    ours, engine = socket.socketpair()
    ours.sendall(b"input the engine never read")
    engine.close()
    with pytest.raises(DockerUnavailable, match="broke while trying to read the command's output"):
        ExecSocket(ours).recv(1024)
    ours.close()


def test_exec_socket_gone_while_writing() -> None:
    ours, engine = socket.socketpair()
    engine.close()
    wrapped = ExecSocket(ours)
    with pytest.raises(DockerUnavailable, match="broke while trying to send input"):
        wrapped.sendall(b"x" * 1_000_000)
    wrapped.shutdown(socket.SHUT_RDWR)  # closing what is gone already is no error
    wrapped.close()
