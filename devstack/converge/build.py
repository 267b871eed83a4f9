"""Built images: hash their build inputs (the files the Dockerfile's COPY/ADD read, after
.dockerignore, plus the Dockerfile, .dockerignore, the build args and the CA bundle), tag the
image by that hash, and build only when no image has the tag. Only those files are sent.

File digests are remembered in .devstack-cache/ by size, mtime, ctime, inode and mode: a file
is read again only when one of those changed. The CA bundle (DEVSTACK_CA_BUNDLE) is added to
the context as certs/devstack-ca-bundle.pem, which the Dockerfile's builder stage trusts for
pip and the final stage never copies.

Stages named in `Build.reuse` start from their image of an earlier build (a build arg names
it; see ReusedStage and reuse_args): a dependency change syncs the previous environment
instead of installing everything again. That choice never enters the hash."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from devstack.converge.buildinputs import CACHE_DIR, BuildInputs, parse_sources, resolve_inputs
from devstack.converge.engine_protocol import BuildRequest, Engine
from devstack.converge.readiness import Cancelled
from devstack.declare import labels
from devstack.declare.spec import Build, ReusedStage
from devstack.errors import BuildFailed, ConfigError

CA_BUNDLE_PATH = "certs/devstack-ca-bundle.pem"
RECIPE = "2"  # bump when the way images are built (or hashed) changes
USERS_SUFFIX = "-deps-users"  # the repository of a build's users: see users_repository
DIGEST_CACHE = "build-digests.json"
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
_STAGE = re.compile(r"^FROM\s.*\sAS\s+(\S+)\s*$", re.IGNORECASE)
_IMAGE_ID = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$")  # the image a step produced
MAX_REUSE_LAYERS = 100  # a longer chain of reused images starts afresh (overlay2 allows 128)
KEEP_REUSE_BASES = 6  # per reused stage: the bases of the latest builds with other reads
KEEP_REUSE_KEYS = 3  # reuse keys (Dockerfile, args, CA bundle) whose tags are kept, newest first
# The legacy builder's own lines (layer ids, cleanup): kept for errors, not shown as progress.
_BOOKKEEPING = (" ---> ", "---> ", "Removing intermediate container", "Successfully ")


class DigestCache:
    """SHA-256 digests of files, remembered by their (size, mtime, ctime, inode, mode) in a
    JSON file: a file whose stat is unchanged is not read again. A missing, corrupt or
    unwritable cache only costs speed. Files modified within `racy_ns` of the lookup are not
    remembered (a second write within the clock's granularity would look unchanged)."""

    VERSION = 1

    def __init__(self, path: Path | None, racy_ns: int = 2_000_000_000) -> None:
        self.path = path
        self.racy_ns = racy_ns
        self.reads = 0  # files read (hashed) by this instance: what the cache could not spare
        self._known = self._load()
        self._seen: dict[str, list[int | str]] = {}

    def _load(self) -> dict[str, list[int | str]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            return {}
        files = data.get("files")
        if not isinstance(files, dict):
            return {}
        return {k: v for k, v in files.items() if isinstance(v, list) and len(v) == 6}

    def digest(self, path: Path, key: str) -> str:
        """`kind:exec-bits:sha256` of the file at `path` (a symlink: of its target's name)."""
        info = path.lstat()
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(path)
            return "l:0:" + hashlib.sha256(target.encode()).hexdigest()
        signature: list[int | str] = [
            info.st_size,
            info.st_mtime_ns,
            info.st_ctime_ns,
            info.st_ino,
            mode,
        ]
        known = self._known.get(key)
        if known and known[:5] == signature and isinstance(known[5], str):
            self._seen[key] = known
            sha = known[5]
        else:
            self.reads += 1
            with path.open("rb") as handle:
                sha = hashlib.file_digest(handle, "sha256").hexdigest()
            if time.time_ns() - info.st_mtime_ns >= self.racy_ns:
                self._seen[key] = [*signature, sha]
        return f"f:{mode & 0o111:o}:{sha}"

    def save(self) -> None:
        """Write the entries looked up (and only those) if they differ from the file's."""
        if self.path is None or self._seen == self._known:
            return
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir()
                (self.path.parent / ".gitignore").write_text("# made by devstack\n*\n")
            temporary.write_text(json.dumps({"version": self.VERSION, "files": self._seen}))
            temporary.replace(self.path)
            self._known = dict(self._seen)
        except OSError:  # read-only checkout, a file in the way...: the cache is optional
            with contextlib.suppress(OSError):
                temporary.unlink()


def build_inputs(build: Build) -> BuildInputs:
    """The context files the build reads and is sent (the CA bundle is added separately).
    `.fallback` says why every file counts when the Dockerfile's inputs cannot be derived."""
    if not (build.context / build.dockerfile).is_file():
        raise ConfigError(
            f"no {build.dockerfile} in {build.context}", hint="run devstack from the repo root"
        )
    return resolve_inputs(build.context, build.dockerfile, never=(CA_BUNDLE_PATH,))


def fallback_reason(build: Build) -> str:
    """Why the whole build context counts as the build's inputs ("" when the Dockerfile's
    COPY/ADD sources tell which files it reads): for the caller to say once. Reads only
    the Dockerfile."""
    path = build.context / build.dockerfile
    try:
        return parse_sources(path.read_text(), build.dockerfile).fallback
    except OSError:
        return ""


def build_hash(build: Build, cache: DigestCache | None = None) -> str:
    """A digest of everything that can change the built image. `cache` defaults to the one
    in the context's .devstack-cache/ directory."""
    if cache is None:
        cache = DigestCache(build.context / CACHE_DIR / DIGEST_CACHE)
    header = f"recipe {RECIPE} target {build.target} file {build.dockerfile} {build.args}"
    digest = hashlib.sha256(header.encode())
    for rel in build_inputs(build).files:
        digest.update(f"\0{rel}\0{cache.digest(build.context / rel, rel)}".encode())
    if build.ca_bundle:
        digest.update(b"\0ca\0" + build.ca_bundle.read_bytes())
    cache.save()
    return digest.hexdigest()


def image_tag(build: Build) -> str:
    """The content-addressed tag, e.g. devstack/api:3f2a…: same inputs, same image."""
    return f"{build.repository}:{build_hash(build)[:16]}"


def _reuse_key(engine: Engine, build: Build) -> str:
    """What must be equal for an earlier build's stage images to be a valid start: the
    Dockerfile, the build args (and the images they name, by id) and the CA bundle."""
    digest = hashlib.sha256(f"recipe {RECIPE}".encode())
    digest.update(b"\0dockerfile\0" + (build.context / build.dockerfile).read_bytes())
    for name, value in build.args:
        info = engine.image_info(value)
        digest.update(f"\0arg\0{name}={value}\0{info[0] if info else ''}".encode())
    if build.ca_bundle:
        digest.update(b"\0ca\0" + build.ca_bundle.read_bytes())
    return digest.hexdigest()[:16]


def _reads_digest(build: Build, reused: ReusedStage, cache: DigestCache) -> str:
    """A digest of the build-input files under `reused.reads`."""
    digest = hashlib.sha256()
    for rel in build_inputs(build).files:
        if any(rel == path or rel.startswith(path.rstrip("/") + "/") for path in reused.reads):
            digest.update(f"\0{rel}\0{cache.digest(build.context / rel, rel)}".encode())
    return digest.hexdigest()[:16]


def reuse_args(engine: Engine, build: Build) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """The build args naming the stage images to start from, and per reused stage the tags to
    set after the build: (its latest image, the base it was built from for these files).

    Tags `<repository>-deps:<key>-<stage>` (latest) and `...-<stage>-<digest of its reads>`:
    with unchanged reads the same base is passed again (a cached stage); with new reads the
    latest image is (an incremental install); with neither, nothing (the Dockerfile's default).
    """
    args: dict[str, str] = {}
    tags: dict[str, tuple[str, str]] = {}
    if not build.reuse:
        return args, tags
    key = _reuse_key(engine, build)
    cache = DigestCache(build.context / CACHE_DIR / DIGEST_CACHE)
    for reused in build.reuse:
        latest = f"{build.repository}-deps:{key}-{reused.stage}"
        based = f"{latest}-{_reads_digest(build, reused, cache)}"
        tags[reused.stage.lower()] = (latest, based)
        for candidate in (based, latest):
            info = engine.image_info(candidate)
            if info and info[1] <= MAX_REUSE_LAYERS:
                args[reused.arg] = info[0]  # by id: a concurrent retag cannot swap it
                break
    cache.save()
    return args, tags


def _context_tar(build: Build) -> io.BytesIO:
    """The build context as sent: the build's inputs and the CA bundle, nothing else."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel in build_inputs(build).files:
            info = tar.gettarinfo(str(build.context / rel), arcname=rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if not info.isreg():
                tar.addfile(info)
                continue
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
    project: str = "",
) -> None:
    """Build `tag`, reporting every output line as it comes, prefixed by its step ("8/19 …");
    BuildFailed names the failing step and carries the last output lines. A `project` that
    leaves reuse tags is recorded as one of their users (see `forget_reuse_tags`)."""
    last_lines: deque[str] = deque(maxlen=25)
    step, counter = "preparing the build context", ""
    reuse, retag = reuse_args(engine, build)
    args = dict(build.args) | reuse
    stage = ""
    stage_images: dict[str, list[str]] = {}  # stage -> its base and the image of each step
    request = BuildRequest(
        context=_context_tar(build),
        dockerfile=build.dockerfile,
        target=build.target,
        tag=tag,
        args=args,
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
                staged = _STAGE.match(match.group(3))
                if staged or match.group(3).upper().startswith("FROM "):
                    stage = staged.group(1).lower() if staged else ""
            elif not line.startswith(_BOOKKEEPING):
                on_output(f"{counter} {line.strip()}")
            elif (produced := _IMAGE_ID.match(line)) and stage:
                stage_images.setdefault(stage, []).append(produced.group(1))
    for name, (latest, based) in retag.items():
        if name in stage_images:
            engine.tag_image(stage_images[name][-1], latest)
            engine.tag_image(stage_images[name][0], based)
            _forget_old_bases(engine, latest)
            if project:  # on an image the reuse tags keep anyway: it holds nothing more
                engine.tag_image(stage_images[name][-1], user_tag(build, project))
    if retag:
        _forget_old_keys(engine, build, next(iter(retag.values()))[0])


def _forget_old_bases(engine: Engine, latest: str) -> None:
    """Untag all but the KEEP_REUSE_BASES most recently set `<latest>-<reads digest>` tags
    (each build sets its own again; the images stay while a kept one is built on them)."""
    repository = latest.rpartition(":")[0]
    bases = sorted(
        (
            (created, reference)
            for reference, created in engine.image_tags(repository).items()
            if reference.startswith(latest + "-")
        ),
        reverse=True,
    )
    for _, reference in bases[KEEP_REUSE_BASES:]:
        engine.remove_image_tag(reference)


def reuse_repository(build: Build) -> str:
    """Where a build's reuse tags live: `<repository>-deps`."""
    return f"{build.repository}-deps"


def stale_reuse_tags(tags: dict[str, int], current_key: str, keep: int) -> list[str]:
    """The reuse tags (`repo-deps:<key>-<stage>[-<reads>]` -> when tagged) of all but the
    `keep` most recently tagged keys; the current key is always kept (and counts)."""
    newest: dict[str, int] = {}
    for reference, when in tags.items():
        key = reference.rpartition(":")[2].partition("-")[0]
        newest[key] = max(when, newest.get(key, when))
    others = sorted((k for k in newest if k != current_key), key=lambda k: (-newest[k], k))
    kept = {current_key, *others[: max(keep - 1, 0)]}
    return sorted(r for r in tags if r.rpartition(":")[2].partition("-")[0] not in kept)


def _forget_old_keys(engine: Engine, build: Build, latest: str) -> None:
    """Untag the reuse tags of older reuse keys (a changed Dockerfile, build args or CA
    bundle), all but the KEEP_REUSE_KEYS newest. The engine refuses to delete an image a
    container still uses (then only nothing happens); untagging never affects a container."""
    current = latest.rpartition(":")[2].partition("-")[0]
    tags = engine.image_tags(reuse_repository(build))
    for reference in stale_reuse_tags(tags, current, KEEP_REUSE_KEYS):
        engine.remove_image_tag(reference)


def users_repository(build: Build) -> str:
    """Where the projects whose builds left reuse tags are recorded: `<repository>-deps-users`,
    one tag per project (`user_tag`), set by each build and removed by its `down --volumes`."""
    return build.repository + USERS_SUFFIX


def user_tag(build: Build, project: str) -> str:
    """The tag recording that `project` uses `build`'s reuse tags."""
    return f"{users_repository(build)}:{project}"


def forget_reuse_tags(engine: Engine, builds: list[Build], project: str) -> list[str]:
    """`down --volumes`: forget that `project` uses the reuse tags of `builds`, and untag them
    unless another project needs them: it recorded itself as a user (its checkout may be down,
    its next build would still start from them) or one of its containers runs an image of the
    build's repository. What was untagged."""
    in_use = engine.container_images()
    removed: list[str] = []
    for build in builds:
        users = engine.image_tags(users_repository(build))
        mine = user_tag(build, project)
        if mine in users:
            engine.remove_image_tag(mine)
            removed.append(mine)
        others = any(
            owner != project and image.startswith(f"{build.repository}:") for owner, image in in_use
        )
        if others or set(users) - {mine}:
            continue
        for reference in sorted(engine.image_tags(reuse_repository(build))):
            engine.remove_image_tag(reference)
            removed.append(reference)
    return removed
