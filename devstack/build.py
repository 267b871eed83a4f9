"""Built images: hash their build inputs (Dockerfile + context after .dockerignore + build args
+ CA bundle), tag the image by that hash, and build only when no image has the tag.

The CA bundle (DEVSTACK_CA_BUNDLE) is added to the context as certs/devstack-ca-bundle.pem,
which the Dockerfile's builder stage trusts for pip and the final stage never copies."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from collections import deque
from collections.abc import Callable

from docker.utils.build import exclude_paths

from devstack import labels
from devstack.engine import BuildRequest, Engine
from devstack.errors import BuildFailed, ConfigError
from devstack.readiness import Cancelled
from devstack.spec import Build

CA_BUNDLE_PATH = "certs/devstack-ca-bundle.pem"
RECIPE = "1"  # bump when the way images are built changes
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
# The legacy builder's own lines (layer ids, cleanup): kept for errors, not shown as progress.
_BOOKKEEPING = (" ---> ", "---> ", "Removing intermediate container", "Successfully ")


def _context_files(build: Build) -> list[str]:
    """Files of the build context, after .dockerignore, sorted."""
    root = build.context
    if not (root / build.dockerfile).is_file():
        raise ConfigError(
            f"no {build.dockerfile} in {root}", hint="run devstack from the repo root"
        )
    ignore = root / ".dockerignore"
    patterns = []
    if ignore.is_file():
        lines = ignore.read_text().splitlines()
        patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    paths = exclude_paths(str(root), patterns, dockerfile=build.dockerfile)
    return sorted(p for p in paths if (root / p).is_file() and p != CA_BUNDLE_PATH)


def build_hash(build: Build) -> str:
    """A digest of everything that can change the built image."""
    digest = hashlib.sha256(f"recipe {RECIPE} target {build.target} {build.args}".encode())
    for rel in _context_files(build):
        path = build.context / rel
        digest.update(f"\0{rel}\0{path.stat().st_mode & 0o111}\0".encode())
        digest.update(path.read_bytes())
    if build.ca_bundle:
        digest.update(b"\0ca\0" + build.ca_bundle.read_bytes())
    return digest.hexdigest()


def image_tag(build: Build) -> str:
    """The content-addressed tag, e.g. devstack/api:3f2a…: same inputs, same image."""
    return f"{build.repository}:{build_hash(build)[:16]}"


def _context_tar(build: Build) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel in _context_files(build):
            info = tar.gettarinfo(str(build.context / rel), arcname=rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with (build.context / rel).open("rb") as handle:
                tar.addfile(info, handle)
        bundle = build.ca_bundle.read_bytes() if build.ca_bundle else b""
        if bundle:
            info = tarfile.TarInfo(CA_BUNDLE_PATH)
            info.size, info.mode = len(bundle), 0o644
            tar.addfile(info, io.BytesIO(bundle))
    buffer.seek(0)
    return buffer


def build_image(
    engine: Engine,
    build: Build,
    tag: str,
    on_output: Callable[[str], None],
    cancel: threading.Event | None = None,
) -> None:
    """Build `tag`, reporting every output line as it comes, prefixed by its step ("8/19 …");
    BuildFailed names the failing step and carries the last output lines."""
    last_lines: deque[str] = deque(maxlen=25)
    step, counter = "preparing the build context", ""
    request = BuildRequest(
        context=_context_tar(build),
        dockerfile=build.dockerfile,
        target=build.target,
        tag=tag,
        args=dict(build.args),
        labels={labels.BUILD_HASH: tag.rpartition(":")[2], "devstack.managed": "true"},
    )
    for chunk in engine.build(request):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        if "error" in chunk:
            raise BuildFailed(
                f"the image {tag} failed to build at {step}: {str(chunk['error']).strip()}",
                hint="fix the Dockerfile or dependency named above, then re-run `up`",
                details="\n".join(last_lines),
            )
        for line in str(chunk.get("stream", "")).splitlines():
            if not line.strip():
                continue
            last_lines.append(line)
            match = _STEP.match(line)
            if match:
                counter = f"{match.group(1)}/{match.group(2)}"
                step = f"step {counter} ({match.group(3)[:80]})"
                on_output(f"{counter} {match.group(3)}")
            elif not line.startswith(_BOOKKEEPING):
                on_output(f"{counter} {line.strip()}")
