"""The dashboard's test stack (tests/integration/test_dashboard.py): two small services on the
local Python image, nothing built, so it comes up in seconds. `web` answers HTTP and has a
Docker health check whose output the dashboard shows; `chatty` logs DASH_CHATTY_RATE lines a
second (1,000 for the log-rate measurement)."""

from devstack import recipes as r

WEB = """
import http.server

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        print("web:", format % args, flush=True)

print("web listening on 8080", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""

CHATTY = """
import os, sys, time
rate = float(os.environ.get("RATE", "5"))
print("chatty started", flush=True)
n = 0
next_at = time.monotonic()
while True:
    n += 1
    sys.stdout.write(f"tick {n} " + ("even" if n % 2 == 0 else "odd") + "\\n")
    sys.stdout.flush()
    next_at += 1 / rate
    time.sleep(max(0.0, next_at - time.monotonic()))
"""

PROBE = "import urllib.request; print('HTTP', urllib.request.urlopen('http://127.0.0.1:8080/ready').status)"


def stack(env: r.Env) -> r.Stack:
    image = env.image("DEVSTACK_PYTHON_IMAGE", "python:3.12-slim")
    port = r.publish(env, "DASH_WEB_PORT", 18090, 8080, url="http://{host}:{port}")
    web = r.container(
        env,
        "web",
        image,
        command=("python3", "-u", "-c", WEB),
        ports=[port],
        ready=r.http(port, "/ready"),
        health=("CMD", "python3", "-c", PROBE),
    )
    rate = env.text("DASH_CHATTY_RATE", "5")
    chatty = r.container(
        env,
        "chatty",
        image,
        command=("python3", "-u", "-c", CHATTY),
        environment={"RATE": rate},
        ready=r.log_line("chatty started"),
        depends_on=[web],
    )
    return r.stack(env, web, chatty)
