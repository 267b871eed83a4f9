"""The dashboard's own cost (issue 24), in headless chromium on its own two-service stack
(tests/integration/dashboard_stack: `web` with a Docker health check, `chatty` logging).

    python bench/dashboard.py --json bench/results/dashboard-<ts>.json

1. CPU of the `devstack dashboard` process while two tabs (two browsers) are open on the idle
   stack, over `--idle` seconds: % of one core (/proc/PID/stat).
2. `docker kill` of `web` to its row turning bad in the page, `--kills` times: the page records
   the moment (a MutationObserver, `Date.now()`), compared with the kill's wall time here.
3. `chatty` at 1,000 lines a second for `--flood` seconds: the lines the page keeps (capped),
   how far behind the newest line the page is, how long the page takes to answer (a script
   round trip, one animation frame), long tasks (PerformanceObserver), and the process's CPU.
Removes what it made (`down --volumes` of its own project).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the bench package of this checkout
    sys.path.insert(0, str(REPO))

from bench.common import free_ports, scrubbed_env  # noqa: E402

STACK = REPO / "tests" / "integration" / "dashboard_stack"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

WATCH_ROW = """
window.benchChanged = null;
const row = () => document.querySelector("#services tbody tr[data-service='web']");
new MutationObserver(() => {
  const r = row();
  if (r && r.dataset.ok === "false" && window.benchChanged === null) {
    window.benchChanged = Date.now();
  }
}).observe(document.getElementById("services"),
           {subtree: true, attributes: true, childList: true});
"""
LONG_TASKS = """
window.benchLongTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.benchLongTasks.push(e.duration);
  }).observe({type: "longtask", buffered: true});
} catch (e) { window.benchLongTasks = null; }
"""
FRAME = """
const done = arguments[arguments.length - 1];
const start = performance.now();
requestAnimationFrame(() => done(performance.now() - start));
"""
NEWEST = """
const lines = document.querySelectorAll('#logs .l');
let newest = 0;
for (let i = lines.length - 1; i >= Math.max(0, lines.length - 50); i--) {
  const m = /^tick (\\d+)/.exec(lines[i].dataset.text || "");
  if (m) { newest = Math.max(newest, Number(m[1])); }
}
return [lines.length, newest];
"""


def poll(check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {check}")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(pid: int, seconds: float) -> float:
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # a measurement window, not a wait for a condition
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - start)


class Bench:
    """The project, its dashboard process and the browsers."""

    def __init__(self, work: Path) -> None:
        from devstack.declare.envfile import read_env_file

        self.dir = work / "stack"
        shutil.copytree(STACK, self.dir)
        inherited = read_env_file(REPO / ".env") if (REPO / ".env").exists() else {}
        self.values = {k: v for k, v in inherited.items() if k == "DEVSTACK_PYTHON_IMAGE"}
        self.values.update(
            DEVSTACK_PROJECT=f"dsdash-{os.getpid()}-{secrets.token_hex(2)}",
            DASH_WEB_PORT=str(free_ports(1)[0]),
            DEVSTACK_HEALTH_INTERVAL="1",
        )
        self.env_file = work / ".env"
        self.env = scrubbed_env(PYTHONPATH=str(REPO))  # as users run: bytecode cached
        self.write()
        self.dashboard: subprocess.Popen[str] | None = None
        self.url = ""
        self.browsers: list[Any] = []

    def write(self, **extra: str) -> None:
        self.values.update(extra)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.values.items()))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "devstack", "--project-dir", str(self.dir),
                "--env-file", str(self.env_file), *args]  # fmt: skip

    def devstack(self, *args: str) -> None:
        result = subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)}: {result.stdout}{result.stderr}")

    def start_dashboard(self) -> None:
        self.dashboard = subprocess.Popen(
            self.command("dashboard", "--no-open"),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.dashboard.stdout is not None
        line = self.dashboard.stdout.readline()
        if "http://" not in line:
            raise SystemExit(f"the dashboard printed no URL: {line}")
        self.url = line.split()[-1]

    def browser(self) -> Any:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        options.add_argument("--window-size=1400,1000")
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.set_script_timeout(30)
        self.browsers.append(driver)
        return driver

    def open(self, driver: Any) -> None:
        driver.get(self.url)
        poll(lambda: driver.execute_script(
            "return document.querySelectorAll('#services tbody tr').length") == 2, 30)  # fmt: skip

    def ok(self, driver: Any) -> str:
        return str(driver.execute_script(
            "return document.querySelector(\"tr[data-service='web']\")?.dataset.ok"))  # fmt: skip

    def close(self) -> None:
        for driver in self.browsers:
            driver.quit()
        if self.dashboard is not None:
            self.dashboard.send_signal(signal.SIGINT)
            self.dashboard.wait(timeout=15)
        subprocess.run(self.command("down", "--volumes"), env=self.env, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the CPU window")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--flood", type=float, default=60.0, help="seconds at 1,000 lines/s")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dsdash-"))
    bench = Bench(work)
    numbers: dict[str, Any] = {}
    try:
        bench.devstack("up", "--quiet")
        bench.start_dashboard()
        assert bench.dashboard is not None
        pid = bench.dashboard.pid
        first, second = bench.browser(), bench.browser()
        for driver in (first, second):
            bench.open(driver)
        poll(lambda: bench.ok(first) == "true", 30)
        time.sleep(3)  # let the pages settle before the CPU window (no condition to poll)
        numbers["idle_cpu_percent_two_tabs"] = round(cpu_percent(pid, args.idle), 3)

        import docker

        client = docker.from_env()
        delays = []
        for _ in range(args.kills):
            first.execute_script(WATCH_ROW)
            container = client.containers.get(f"{bench.values['DEVSTACK_PROJECT']}-web")
            killed = time.time()
            container.kill()
            changed = poll(lambda: first.execute_script("return window.benchChanged"), 10, 0.02)
            delays.append(changed / 1000 - killed)
            container.start()
            poll(lambda: bench.ok(first) == "true", 60, 0.1)
        numbers["kill_to_row_s"] = {
            "median": round(statistics.median(delays), 3),
            "max": round(max(delays), 3),
            "samples": [round(d, 3) for d in delays],
        }

        bench.write(DASH_CHATTY_RATE="1000")
        bench.devstack("up", "--quiet")  # recreates chatty at 1,000 lines a second
        bench.open(first)
        first.execute_script(LONG_TASKS)
        flood: list[dict[str, float]] = []
        before, start = cpu_seconds(pid), time.monotonic()
        while time.monotonic() - start < args.flood:
            began = time.perf_counter()
            kept, newest = first.execute_script(NEWEST)
            round_trip = time.perf_counter() - began
            frame = first.execute_async_script(FRAME)
            printed = client.containers.get(f"{bench.values['DEVSTACK_PROJECT']}-chatty")
            last = printed.logs(tail=1).decode().split()
            behind = int(last[1]) - newest if len(last) > 1 and last[0] == "tick" else -1
            flood.append({"kept": kept, "behind_lines": behind, "script_ms":
                          1000 * round_trip, "frame_ms": frame})  # fmt: skip
            time.sleep(2)  # a sampling interval, not a wait for a condition
        cpu = 100 * (cpu_seconds(pid) - before) / (time.monotonic() - start)
        long_tasks = first.execute_script("return window.benchLongTasks")
        numbers["flood_1000_lines_per_s"] = {
            "seconds": args.flood,
            "kept_max": max(s["kept"] for s in flood),
            "behind_lines_median": statistics.median(s["behind_lines"] for s in flood),
            "behind_lines_max": max(s["behind_lines"] for s in flood),
            "script_round_trip_ms_median": round(
                statistics.median(s["script_ms"] for s in flood), 1
            ),
            "script_round_trip_ms_max": round(max(s["script_ms"] for s in flood), 1),
            "frame_ms_median": round(statistics.median(s["frame_ms"] for s in flood), 1),
            "frame_ms_max": round(max(s["frame_ms"] for s in flood), 1),
            "long_tasks": None if long_tasks is None else len(long_tasks),
            "long_task_ms_max": max(long_tasks) if long_tasks else 0,
            "dashboard_cpu_percent": round(cpu, 1),
        }
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    numbers["loadavg"] = os.getloadavg()
    print(json.dumps(numbers, indent=2))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
