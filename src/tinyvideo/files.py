"""Files that appear whole or not at all: written beside their place under a temporary name, then renamed
over it, so a reader (or another process, or a rerun after a crash) never sees half a file. And what a file or
folder holds, as a digest: the same path may hold another model later."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """`write(tmp)` fills a temporary file in `path`'s folder (created if missing), which then replaces
    `path`; on an error it is removed and `path` is left as it was. The temporary name ends in `path`'s
    suffix, for writers that choose the format by it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    usual_permissions(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def usual_permissions(path: str | os.PathLike) -> None:
    """Give a file, or a folder and all it holds, the permissions `open` or `mkdir` would have given them
    (0o666 or 0o777, less the process's umask): `tempfile`, and some writers, make them readable by their
    owner only."""
    umask = os.umask(0)
    os.umask(umask)
    for item in (Path(path), *(Path(path).rglob("*") if os.path.isdir(path) else ())):
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """`text` as the UTF-8 file `path`."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data) -> Path:
    """`data` as a JSON file (indent 1, non-ASCII kept)."""
    return write_text(path, json.dumps(data, indent=1, ensure_ascii=False))


def write_jsonl(path: str | os.PathLike, rows: Iterable) -> Path:
    """One JSON value per line."""
    return write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def content_sha256(path: str | os.PathLike) -> str:
    """A sha256 hex digest of what a file or folder holds: for each file (the file itself, or every file in the folder
    and its subfolders, symbolic links followed, names starting with "." left out: `.git/`, `.cache/`), its relative
    path, size and bytes, in sorted path order. Reads every byte (1.7 s for a 515 MB model on a busy 2-core CPU).
    `FileNotFoundError` when `path` does not exist; `OSError` when a file cannot be read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    files = [path] if path.is_file() else []
    for folder, subfolders, names in os.walk(path, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        files += [Path(folder) / name for name in names if not name.startswith(".")]
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()
