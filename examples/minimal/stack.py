"""A stack of two services and no build: PostgreSQL and a small web app (standard library only,
served by a Python image), with no Redis, no worker and no migrations. devstack's tests bring it
up, show it, export it to Kubernetes and run the pytest plugin against it
(tests/integration/test_other_stack.py). Try it: `python -m devstack --project-dir
examples/minimal up`."""

from devstack import recipes as r

# The web app: answers /ready with 200 once its database accepts connections.
APP = """
import http.server, os, socket

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            socket.create_connection((os.environ["DB_HOST"], 5432), timeout=1).close()
            status, body = 200, b"ok"
        except OSError as exc:
            status, body = 503, str(exc).encode()
        self.send_response(status if self.path == "/ready" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


def stack(env: r.Env) -> r.Stack:
    db = r.postgres(
        env,
        "db",
        image=env.image("DEVSTACK_POSTGRES_IMAGE", "postgres:17-alpine"),
        port_key="MINI_DB_PORT",
        port_default=15432,
        user="mini",
        password=env.secret("MINI_DB_PASSWORD", r.EXAMPLE_PASSWORD),
        database="mini",
    )
    port = r.publish(env, "MINI_WEB_PORT", 18080, 8080, url="http://{host}:{port}")
    web = r.container(
        env,
        "web",
        env.image("DEVSTACK_PYTHON_IMAGE", "python:3.12-slim"),
        command=("python3", "-c", APP),
        environment={"DB_HOST": "db"},
        ports=[port],
        ready=r.http(port, "/ready"),
        depends_on=[db],
        init=True,  # python as PID 1 ignores SIGTERM: without it every stop waits 10 s
    )
    return r.stack(env, db, web)
