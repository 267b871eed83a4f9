"""The `export k8s` use case: validate the options, render the production stack, write files.

Everything is checked before anything is written: a bad option, a declaration with no
Kubernetes equivalent or an output directory with files devstack did not write is a
ConfigError (exit 2) and leaves the directory as it was. Files devstack wrote are listed, with
their SHA-256, in `.devstack-export.json` in the output directory: a later export overwrites
those (and only those, unless `--force`) while they are unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from devstack.declare.spec import Stack
from devstack.errors import ConfigError, DevstackError
from devstack.k8s import DEFAULT_KUBECTL_IMAGE, Rendered, RenderOptions, dns_label, render
from devstack.usecases import Project, project_of

MARKER = ".devstack-export.json"
GENERATOR = "python -m devstack export k8s"

# Image references, after the grammar of distribution/reference (what docker and containerd
# accept): [domain[:port]/]path-component(/path-component)*[:tag][@algorithm:hex].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
IMAGE_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?",
    re.ASCII,
)
DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
IMAGE_EXAMPLE = "registry.example.com/app/api:1.0"


@dataclass(frozen=True)
class ExportOptions:
    """The command line's choices for `export k8s`."""

    out: Path
    api_image: str | None  # every built image (the stack's only build), as before --image
    images: tuple[tuple[str, str], ...] = ()  # `--image NAME=REF`: a built service's image
    namespace: str | None = None
    replicas: int = 1
    secrets_from_env: bool = False
    force: bool = False
    kubectl_image: str = DEFAULT_KUBECTL_IMAGE


def check_image(reference: str, option: str) -> str:
    """`reference` if it is a valid image reference, else ConfigError naming `option`."""
    match = IMAGE_REFERENCE.fullmatch(reference)
    if match is None or len(match.group("name")) > 255:
        raise ConfigError(
            f"{option} {reference!r} is not a valid image reference",
            hint=f"use [registry[:port]/]path[:tag][@sha256:digest] with a lowercase path, "
            f"e.g. {IMAGE_EXAMPLE}",
        )
    return reference


def check_namespace(namespace: str) -> str:
    """`namespace` if it is a DNS-1123 label (what Kubernetes requires), else ConfigError."""
    if not DNS_LABEL.fullmatch(namespace):
        raise ConfigError(
            f"--namespace {namespace!r} is not a valid Kubernetes namespace",
            hint="use a DNS label: at most 63 lowercase letters, digits and '-', starting and "
            "ending with a letter or digit",
        )
    return namespace


def production_stack(project: Project) -> Stack:
    """The stack as production runs it: the dev-mode switches (reload, source mounts) off."""
    return project_of(replace(project.settings, dev_mode=False)).stack


def built_images(stack: Stack, options: ExportOptions) -> dict[str, str]:
    """The registry reference of every service built on this machine: its own `--image
    NAME=REF`, else that of a service built the same way, else `--api-image`."""
    given = {name: check_image(ref, f"--image {name}=") for name, ref in options.images}
    built = [s for s in stack.services if s.build is not None]
    for name in given:
        if name not in {s.name for s in built}:
            raise ConfigError(
                f"--image {name}=...: {name} is not a service built from the project",
                hint=f"built services: {', '.join(s.name for s in built) or 'none'}",
            )
    fallback = check_image(options.api_image, "--api-image") if options.api_image else ""
    if fallback and len({s.build for s in built}) > 1:
        raise ConfigError(
            "--api-image is ambiguous: this stack builds more than one image",
            hint="name each with --image SERVICE=REF",
        )
    images: dict[str, str] = {}
    for service in built:
        same = [given[s.name] for s in built if s.build == service.build and s.name in given]
        ref = given.get(service.name) or (same[0] if same else fallback)
        if not ref:
            raise ConfigError(
                f"export k8s needs the image of {service.name} as the cluster pulls it "
                "(devstack builds it on this machine only; the cluster needs it in a registry "
                "it can reach)",
                hint=f"push the built image and name it, e.g. --image {service.name}="
                f"{IMAGE_EXAMPLE} (or --api-image REF for the stack's only build)",
            )
        images[service.name] = ref
    return images


def export_k8s(project: Project, options: ExportOptions) -> Rendered:
    """The manifests for `project` (nothing written); ConfigError on bad input."""
    stack = production_stack(project)
    images = built_images(stack, options)
    kubectl_image = check_image(options.kubectl_image, "--kubectl-image")
    namespace = check_namespace(options.namespace or dns_label(project.stack.project))
    if options.replicas < 1:
        raise ConfigError(f"--replicas must be at least 1 (got {options.replicas})")
    settings = project.settings
    example = [name for name in stack.example_secrets]
    if options.secrets_from_env and example:
        raise ConfigError(
            f"--secrets-from-env would put the example {example[0]} into the cluster",
            hint=f"set a real {example[0]} in {settings.env_file}, or leave out "
            "--secrets-from-env and create the Secret yourself",
        )
    render_options = RenderOptions(
        namespace=namespace,
        images=images,
        replicas=options.replicas,
        secrets_from_env=options.secrets_from_env,
        kubectl_image=kubectl_image,
        wait_timeout=settings.timeout,
    )
    return render(stack, render_options)


# --- writing ---------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _written_before(out: Path) -> dict[str, str]:
    """File name -> SHA-256 of what the last export wrote in `out` (empty if none)."""
    try:
        listing = json.loads((out / MARKER).read_text(encoding="utf-8"))
        files = listing["files"]
        names = {str(name): str(digest) for name, digest in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    # plain file names only: a doctored listing must not reach outside `out`
    return {n: d for n, d in names.items() if n == Path(n).name and not n.startswith(".")}


def foreign_files(out: Path) -> list[str]:
    """Entries of `out` that the last export did not write, or that changed since."""
    if not out.is_dir():
        return []
    ours = _written_before(out)
    foreign: list[str] = []
    for entry in sorted(out.iterdir()):
        if entry.name == MARKER and ours:
            continue
        if entry.is_dir() and not entry.is_symlink():
            foreign.append(f"{entry.name}/")
        elif entry.name not in ours or _sha256(entry.read_bytes()) != ours[entry.name]:
            foreign.append(entry.name)
    return foreign


def check_out_dir(out: Path, force: bool) -> None:
    """ConfigError when `out` is not a directory, or holds files devstack did not write
    (or that were edited since) and `force` is not set."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    foreign = foreign_files(out)
    if foreign and not force:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise ConfigError(
            f"{out} holds files that devstack did not write (or that changed since): {shown}",
            hint="choose another --out, or pass --force to overwrite devstack's files there",
        )


def write_manifests(out: Path, files: dict[str, str], force: bool = False) -> list[Path]:
    """Write `files` into `out` (each atomically), remove the files of the previous export
    that are no longer rendered, and record what was written. Returns the paths written."""
    check_out_dir(out, force)
    try:
        return _write(out, files)
    except OSError as exc:
        raise DevstackError(
            f"cannot write the manifests to {out}: {exc.strerror or exc}",
            hint="check the directory's permissions and free space, or choose another --out",
        ) from exc


def _write(out: Path, files: dict[str, str]) -> list[Path]:
    previous = _written_before(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    digests: dict[str, str] = {}
    for name, text in files.items():
        data = text.encode("utf-8")
        path = out / name
        temporary = out / f".{name}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, path)
        written.append(path)
        digests[name] = _sha256(data)
    for name, digest in previous.items():
        stale = out / name
        if name not in files and stale.is_file() and _sha256(stale.read_bytes()) == digest:
            stale.unlink()
    listing = {"generator": GENERATOR, "files": dict(sorted(digests.items()))}
    (out / MARKER).write_text(json.dumps(listing, indent=2) + "\n", encoding="utf-8")
    return written
