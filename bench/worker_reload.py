"""Median time from saving service/tasks.py to the worker running the new code.

Run from the repo root against a running dev-mode stack: `python bench/worker_reload.py [API_URL]`
(default http://127.0.0.1:8000). Each sample saves a changed task, then queues tasks until
one's result shows the change; the file is restored at the end."""

import pathlib
import statistics
import sys
import time

import httpx

api = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
path = pathlib.Path("service/tasks.py")
original = path.read_text()
needle = "return asyncio.run(record_task(dsn, task_id, message, worker, work_s))"
assert needle in original
samples = []
try:
    for i in range(5):
        mark = f"v{i}-{time.time_ns()}"
        start = time.monotonic()
        path.write_text(
            original.replace(needle, needle.replace("message,", f"message + {mark!r},"))
        )
        while True:
            r = httpx.post(f"{api}/api/v1/tasks", json={"message": "m"}, timeout=5).json()
            url = api + r["url"]
            deadline = time.monotonic() + 30
            state = {}
            while time.monotonic() < deadline:
                state = httpx.get(url, timeout=5).json()
                if state["state"] == "SUCCESS":
                    break
                time.sleep(0.01)
            if state.get("state") == "SUCCESS" and state["result"]["message"].endswith(mark):
                break
        samples.append(time.monotonic() - start)
        print(f"{samples[-1]:.2f}s", flush=True)
finally:
    path.write_text(original)
print("median", round(statistics.median(samples), 2))
