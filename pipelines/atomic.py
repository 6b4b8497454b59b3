"""Outputs appear whole or not at all, built beside their final place and renamed into it, and
never in the place of an input.

A temporary's name carries its process and host (``.OUT.tmp-PID@HOST-xxxxxxxx``), so the next
write of the same output removes those a killed run left, and never one whose process lives.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pipelines.errors import OdliteError


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _prefix(out: Path, kind: str) -> str:
    return f".{out.name}.{kind}-{os.getpid()}@{socket.gethostname()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True


def remove_stale(out: Path) -> list[Path]:
    """Remove the temporaries of ``out`` that killed runs on this host left; the removed paths.

    When ``out`` itself is missing because a run died between moving the old output aside and
    moving the new one in, the old one is put back rather than removed.
    """
    out = Path(out)
    pattern = re.compile(re.escape(f".{out.name}.") + r"(tmp|old)-(\d+)@(.+)-[a-z0-9_]{8}(\.tmp)?")
    host, removed = socket.gethostname(), []
    try:
        entries = sorted(out.parent.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match[3] != host or int(match[2]) == os.getpid() or _alive(int(match[2])):
            continue
        if match[1] == "old" and not out.exists() and (entry / out.name).is_dir():
            os.replace(entry / out.name, out)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextmanager
def atomic_file(out: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; on success it becomes ``out``, on failure it goes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    descriptor, temporary = tempfile.mkstemp(dir=out.parent, prefix=_prefix(out, "tmp"), suffix=".tmp")
    os.close(descriptor)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, out)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_text_atomically(out: Path, text: str) -> None:
    with atomic_file(out) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def atomic_folder(out: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh folder beside ``out``; on success it takes ``out``'s place, on failure it goes.

    An existing ``out`` is refused unless ``overwrite``, and removed only once the new one is in place.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OdliteError.at(out, "already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise OdliteError.at(out, "exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(out, "tmp"), dir=out.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide the output from other users
    try:
        yield tmp
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(out, "old"), dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def tempfiles_in(folder: Path) -> Iterator[Path]:
    """Python's ``tempfile`` writes into ``folder`` for the block (made, then removed).

    The TFLite converter saves a whole SavedModel into the system's temporary folder and a killed
    run leaves it there; inside an output's temporary folder it goes with that folder instead.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    previous, tempfile.tempdir = tempfile.tempdir, str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


def _real(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()  # symlinks followed: a link to the data is the data


def matched(what: str, patterns: Iterable[str]) -> list[tuple[str, str]]:
    """(what, file) for each local file the patterns (``data/train-*.tfrecord``) match, as inputs."""
    return [(what, file) for pattern in patterns if "://" not in pattern for file in sorted(glob.glob(pattern))]


def refuse_overlap(
    out: str | Path, inputs: Iterable[tuple[str, str | Path | None]], may_hold_output: Iterable[str] = ()
) -> None:
    """Refuse, before anything is written, an output that is or holds one of the inputs, or lies
    inside an input folder.

    Replacing such an output (``--overwrite``, or a folder swapped in whole) deletes the input, and
    an output inside a folder that is read as input is read back by the next run. ``inputs`` are
    (what, path) pairs, None where absent; ``may_hold_output`` names the input folders an output
    may lie inside (a model directory holds its eval/ reports).
    """
    target = _real(out)
    nested_ok = set(may_hold_output)
    for what, path in inputs:
        if path is None or str(path) == "" or "://" in str(path):
            continue
        source = _real(path)
        if target == source or target in source.parents:
            relation = "is" if target == source else "holds"
            reason = f"{relation} the {what} ({path}): writing or replacing the output could destroy it"
        elif source in target.parents and source.is_dir() and what not in nested_ok:
            reason = f"lies inside the {what} ({path}): the next run would read the output as input"
        else:
            continue
        raise OdliteError.at(out, f"{reason}; choose a place apart from the inputs (nothing was written)")
