"""Split the builder's /opt/venv into the two layers the runtime stage copies.

    python venv_layers.py VENV ANCHOR DELTA

ANCHOR is a full copy of some earlier state of VENV (kept in the builder image from build to
build, so the runtime's `COPY --from=builder ANCHOR` is a cached layer while it is unchanged);
DELTA receives every entry of VENV that ANCHOR lacks or holds differently. ANCHOR + DELTA
copied in that order is exactly VENV. When VENV dropped an entry of ANCHOR (a package removed
or upgraded), or the delta would exceed a quarter of VENV's bytes, ANCHOR becomes a copy of
VENV (hard links) and DELTA is empty. Bytecode is compiled first (only stale or missing .pyc
files are written), so a fresh and an incremental install compile the same way.
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

Entry = tuple[str, int, int, int, str]  # kind, mode, size, mtime_ns, link target


def scan(root: Path) -> dict[str, tuple[Entry, os.stat_result]]:
    """Every entry below `root` by relative path: what makes two of them equal, and its stat."""
    found: dict[str, tuple[Entry, os.stat_result]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISDIR(info.st_mode):
                entry: Entry = ("d", info.st_mode, 0, 0, "")
            elif stat.S_ISLNK(info.st_mode):
                entry = ("l", 0, 0, 0, os.readlink(path))
            else:
                entry = ("f", info.st_mode, info.st_size, info.st_mtime_ns, "")
            found[rel] = (entry, info)
    return found


def same_content(a: Path, b: Path, sa: os.stat_result, sb: os.stat_result) -> bool:
    """Hard links of one file, or byte-equal files."""
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk_a, chunk_b = fa.read(1 << 20), fb.read(1 << 20)
            if chunk_a != chunk_b:
                return False
            if not chunk_a:
                return True


def clear(directory: Path) -> None:
    """Empty `directory`, keeping it (its own metadata is part of the runtime's COPY)."""
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def compile_bytecode(site: Path) -> None:
    """Write the .pyc of every module whose .pyc is missing or stale, as compileall does (a
    process per core when there are many; a failure only costs import speed)."""
    stale = []
    for source in site.rglob("*.py"):
        cached = Path(importlib.util.cache_from_source(str(source)))
        try:
            header = cached.read_bytes()[8:16]
            info = source.stat()
        except OSError:
            stale.append(source)
            continue
        expected = struct.pack("<II", int(info.st_mtime) & 0xFFFFFFFF, info.st_size & 0xFFFFFFFF)
        if header != expected:
            stale.append(source)
    if len(stale) > 200:
        compileall.compile_dir(site, quiet=2, workers=0)
    else:
        for source in stale:
            compileall.compile_file(source, quiet=2)


def main(venv: Path, anchor: Path, delta: Path) -> None:
    """Compile bytecode, then make ANCHOR + DELTA equal VENV (see the module docstring)."""
    compile_bytecode(Path(sysconfig.get_path("purelib", vars={"base": str(venv)})))
    new, old = scan(venv), scan(anchor)
    changed: list[str] = []
    changed_bytes = 0
    for rel, (entry, info) in new.items():
        previous = old.get(rel)
        if (
            previous is not None
            and previous[0] == entry
            and (entry[0] != "f" or same_content(venv / rel, anchor / rel, info, previous[1]))
        ):
            continue
        changed.append(rel)
        changed_bytes += entry[2]
    total = sum(entry[2] for entry, _ in new.values())
    removed = old.keys() - new.keys()
    clear(delta)
    if removed or not old or changed_bytes * 4 > total:
        clear(anchor)
        subprocess.run(["cp", "-al", f"{venv}/.", str(anchor)], check=True)
        print(f"venv layers: new anchor ({len(new)} entries), empty delta")
        return
    for rel in sorted(changed):  # parents before children
        source, target = venv / rel, delta / rel
        kind = new[rel][0][0]
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "d":
            target.mkdir(exist_ok=True)
            shutil.copystat(source, target)
        elif kind == "l":
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
    for directory, dirs, _ in os.walk(delta):  # parents made above: the venv's modes
        for name in dirs:
            rel = os.path.relpath(os.path.join(directory, name), delta)
            os.chmod(os.path.join(directory, name), stat.S_IMODE(new[rel][0][1]))
    print(f"venv layers: anchor kept, delta of {len(changed)} entries ({changed_bytes} bytes)")


if __name__ == "__main__":
    main(*(Path(arg) for arg in sys.argv[1:4]))
