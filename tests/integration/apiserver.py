"""A real Kubernetes API server for tests: etcd and kube-apiserver on free loopback ports
(the envtest assets: KUBEBUILDER_ASSETS, else what the shared setup script prints), and
`kubectl` to apply manifests server-side. No nodes: admission, defaulting, validation,
PodSecurity and Go's YAML parsing are real; pods never run."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = ("kube-apiserver", "etcd", "kubectl")
HOW_TO_GET = (
    "the envtest assets (kube-apiserver, etcd, kubectl) are missing: set KUBEBUILDER_ASSETS "
    "to their folder, e.g. `export KUBEBUILDER_ASSETS=$(setup-envtest use -p path)` "
    "(go install sigs.k8s.io/controller-runtime/tools/setup-envtest@latest), or on the "
    "project's machines `export KUBEBUILDER_ASSETS=$(bash ../shared/envtest/setup.sh)`"
)
START_TIMEOUT = 120.0  # ~25 s to /readyz on 2 cores
# What every workload's pods must satisfy: enforce, and warn (workloads only get warnings:
# enforce applies to pods, which no controller creates here).
RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}


def setup_scripts() -> list[Path]:
    """Where the shared envtest setup script may be, in order (as .ci/run looks)."""
    candidates = []
    if os.environ.get("DEVSTACK_SHARED_DIR"):
        candidates.append(Path(os.environ["DEVSTACK_SHARED_DIR"]) / "envtest" / "setup.sh")
    candidates += [
        REPO_ROOT.parent / "shared" / "envtest" / "setup.sh",
        Path("/work/shared/envtest/setup.sh"),
    ]
    return candidates


def find_assets() -> Path | None:
    """The folder holding kube-apiserver, etcd and kubectl, or None."""
    given = os.environ.get("KUBEBUILDER_ASSETS")
    folders = [Path(given)] if given else []
    if not folders:
        script = next((s for s in setup_scripts() if s.is_file()), None)
        if script is not None:
            result = subprocess.run(
                ["bash", str(script)], capture_output=True, text=True, timeout=600
            )
            if result.returncode == 0 and result.stdout.strip():
                folders.append(Path(result.stdout.strip().splitlines()[-1]))
    for folder in folders:
        if all(os.access(folder / name, os.X_OK) for name in ASSETS[:2]):
            return folder
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Applied:
    """What one `kubectl apply --server-side` printed."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Warning:")]


@dataclass
class ApiServer:
    """A running etcd + kube-apiserver and a kubeconfig that reaches it as an admin."""

    assets: Path
    workdir: Path
    url: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def kubectl_path(self) -> str:
        own = self.assets / "kubectl"
        found = str(own) if os.access(own, os.X_OK) else shutil.which("kubectl")
        if not found:
            raise AssertionError(f"no kubectl in {self.assets} or on PATH: {HOW_TO_GET}")
        return found

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [self.kubectl_path(), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(command, capture_output=True, text=True, input=input, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}\n{result.stderr}"
            )
        return result

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.assets / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",
            ],
        )
        key, pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
            check=True,
            capture_output=True,
        )
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f"{self.token},admin,admin,system:masters\n")
        (self.workdir / "certs").mkdir()
        self._spawn(
            "kube-apiserver",
            [
                str(self.assets / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'certs'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pub}",
                f"--service-account-signing-key-file={key}",
                "--service-cluster-ip-range=10.96.0.0/12",
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,"
                "LimitRanger,ResourceQuota,DefaultStorageClass",
            ],
        )
        self.url = f"https://127.0.0.1:{api_port}"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "envtest",
                            "cluster": {"server": self.url, "insecure-skip-tls-verify": True},
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [
                        {"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}
                    ],
                    "current-context": "envtest",
                }
            )
        )
        self._wait_ready()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def _ready(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(
            f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for process, name in zip(self.processes, ("etcd", "kube-apiserver"), strict=False):
                if process.poll() is not None:
                    log = (self.workdir / f"{name}.log").read_text(errors="replace")
                    raise AssertionError(f"{name} exited {process.returncode}:\n{log[-3000:]}")
            if self._ready():
                return
            time.sleep(0.5)
        log = (self.workdir / "kube-apiserver.log").read_text(errors="replace")
        raise AssertionError(f"kube-apiserver not ready after {START_TIMEOUT}s:\n{log[-3000:]}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)

    # -- what the tests do ---------------------------------------------------------------------

    def restricted_namespace(self, name: str) -> None:
        """A namespace whose pods must meet PodSecurity `restricted` (enforced, warned and
        audited), with the `default` ServiceAccount no controller creates here."""
        labels = {"kubernetes.io/metadata.name": name, **RESTRICTED}
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        }
        account = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": name},
        }
        self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(namespace))
        self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(account))

    def apply(self, directory: Path) -> Applied:
        """`kubectl apply --server-side -k DIR` (plus secret.yaml when the kustomization
        leaves it out: its placeholders are valid values)."""
        result = self.kubectl(
            "apply", "--server-side", "--field-manager=devstack", "-k", str(directory), check=False
        )
        applied = Applied(result.returncode, result.stdout, result.stderr)
        secret = directory / "secret.yaml"
        if secret.is_file() and "secret.yaml" not in (directory / "kustomization.yaml").read_text():
            extra = self.kubectl(
                "apply", "--server-side", "--field-manager=devstack", "-f", str(secret), check=False
            )
            applied = Applied(
                max(applied.returncode, extra.returncode),
                applied.stdout + extra.stdout,
                applied.stderr + extra.stderr,
            )
        return applied

    def objects(self, namespace: str) -> dict[str, dict[str, Any]]:
        """`KIND/NAME` -> the object, for what devstack manages in `namespace`."""
        kinds = (
            "configmaps,secrets,services,deployments,statefulsets,jobs,serviceaccounts,roles,"
            "rolebindings,networkpolicies"
        )
        result = self.kubectl(
            "get",
            kinds,
            "-n",
            namespace,
            "-l",
            "app.kubernetes.io/managed-by=devstack",
            "-o",
            "json",
        )
        items = json.loads(result.stdout)["items"]
        return {f"{item['kind']}/{item['metadata']['name']}": item for item in items}

    def pods_admitted(self, namespace: str, objects: dict[str, dict[str, Any]]) -> list[str]:
        """Each workload's pod template, created as a Pod (server-side dry run: admission,
        PodSecurity enforce and validation, nothing stored); the refusals."""
        refused = []
        for key, item in objects.items():
            spec = item.get("spec", {})
            template = spec.get("template") if isinstance(spec, dict) else None
            if not template:
                continue
            pod_spec = dict(template["spec"])
            # a StatefulSet's claims become volumes of its pods: stand in with emptyDirs
            claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])]
            if claims:
                volumes = [{"name": c, "emptyDir": {}} for c in claims]
                pod_spec["volumes"] = [*pod_spec.get("volumes", []), *volumes]
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"probe-{item['metadata']['name']}"[:63],
                    "namespace": namespace,
                },
                "spec": pod_spec,
            }
            result = self.kubectl(
                "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
            )
            if result.returncode != 0 or "Warning:" in result.stderr:
                refused.append(f"{key}: {result.stderr.strip()}")
        return refused


@contextlib.contextmanager
def running(assets: Path, workdir: Path) -> Iterator[ApiServer]:
    server = ApiServer(assets, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
