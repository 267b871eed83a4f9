"""What a short command (`status`) pays for: no http.client, no importlib.metadata, no
second declaration of the stack for a built-in command word; and the engine's plain calls
over a unix socket without http.client (whole, chunked and cut-short answers)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.engine.docker import DockerEngine
from devstack.engine.endpoint import Endpoint
from devstack.engine.errors import SocketBroken
from devstack.engine.socket import SocketApi, parse_response

REPO = Path(__file__).resolve().parents[2]
# what `status` needs none of (each costs it 1-15 ms): only failures or other commands do
UNWANTED = (
    "http.client",
    "importlib.metadata",
    "email.parser",
    "concurrent.futures",
    "logging",
    "difflib",
    "traceback",
    "datetime",
    "devstack.converge.buildinputs",
    "devstack.converge.plan",
    "rich",  # off a terminal the table is devstack.cli.plaintable's
)


def test_status_path_imports_neither_http_client_nor_metadata(tmp_path: Path) -> None:
    """Parsing `status`, loading the project, the engine's modules and the status threads
    import none of UNWANTED."""
    (tmp_path / "stack.py").write_text(
        "from devstack import recipes as r\n\n"
        "def stack(env):\n"
        "    return r.stack(env, r.redis(env, 'redis', image='redis:7'))\n"
    )
    code = (
        "import sys\n"
        "from devstack.cli.parser import parse_args\n"
        "from devstack.usecases import load_project\n"
        "from devstack.usecases.threads import each_at_once\n"
        "import devstack.cli.plaintable\n"
        "import devstack.engine.docker, devstack.converge.status, devstack.converge.verdicts\n"
        f"args = parse_args(['--project-dir', {str(tmp_path)!r}, 'status'])\n"
        "load_project(args.project_dir, args.env_file)\n"
        "each_at_once(str, ['a', 'b'])\n"
        f"print(sorted(m for m in {UNWANTED!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"


def test_built_in_word_declares_the_stack_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parser declares the stack for its shortcuts only when the word is not built in."""
    from devstack.cli import parser

    calls: list[Path] = []
    monkeypatch.setattr(parser, "_declared", lambda d: calls.append(d) or ((), None))
    parser.parse_args(["--project-dir", str(tmp_path), "status", "--json"])
    assert calls == []
    with pytest.raises(SystemExit):
        parser.parse_args(["--project-dir", str(tmp_path), "psql"])
    assert calls  # an unknown word: the shortcuts are looked up


def test_parse_response_lengths_and_chunks() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    assert parse_response(head + b"Content-Length: 2\r\n\r\n[]") == (200, b"[]")
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2;x=y\r\n2]\r\n0\r\n\r\n"
    assert parse_response(chunked) == (200, b"[1,2]")
    assert parse_response(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, b"")
    assert parse_response(head + b"\r\nuntil the end") == (200, b"until the end")
    for cut in (
        b"HTTP/1.1 200 OK\r\nContent-Le",
        head + b"Content-Length: 10\r\n\r\n[]",
        head + b"Transfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n",
        b"garbage\r\n\r\n",
    ):
        with pytest.raises(ValueError):
            parse_response(cut)


@pytest.fixture
def fake_engine_socket(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A unix socket answering each connection with a chunked JSON echo of its request
    line, or cutting the connection when the path asks for it."""
    path = str(tmp_path / "engine.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    requests: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                sizes = [int(h.split(b":")[1]) for h in lines if h.startswith(b"content-length")]
                length = sizes[0] if sizes else 0
                while len(body) < length:
                    body += conn.recv(4096)
                requests.append(head + b"\r\n\r\n" + body)
                if b"/cut" in head:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{")
                    continue
                if b"GET /_ping " in head:  # as Docker answers a ping
                    conn.sendall(b"HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\n\r\nOK")
                    continue
                payload = json.dumps({"line": head.split(b"\r\n")[0].decode()}).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + f"{len(payload):x}\r\n".encode()
                    + payload
                    + b"\r\n0\r\n\r\n"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, requests
    server.close()


def test_socket_api_round_trip(fake_engine_socket: tuple[str, list[bytes]]) -> None:
    path, requests = fake_engine_socket
    api = SocketApi(path, timeout=5)
    status, body = api.call("GET", "/containers/json?all=1")
    assert status == 200
    assert json.loads(body) == {"line": "GET /containers/json?all=1 HTTP/1.1"}
    status, _ = api.call("POST", "/volumes/create", {"Name": "v"})
    assert status == 200
    assert requests[-1].endswith(b'\r\n\r\n{"Name": "v"}')
    assert b"Content-Type: application/json" in requests[-1]
    assert b"Connection: close" in requests[-1]
    with pytest.raises(SocketBroken):
        api.call("GET", "/cut")


def test_the_api_version_comes_from_a_ping(fake_engine_socket: tuple[str, list[bytes]]) -> None:
    """`GET /version` also asks containerd (6-13 ms); a ping's header says the same."""
    path, requests = fake_engine_socket
    engine = DockerEngine(endpoint=Endpoint("test", f"unix://{path}"))
    assert engine.api_version() == "1.45"
    assert engine.api_version() == "1.45"  # asked once
    assert [r.split(b"\r\n")[0] for r in requests] == [b"GET /_ping HTTP/1.1"]
