"""Outputs written whole: temporaries of killed runs are cleaned up, never those of a live one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

import pytest
from conftest import LABEL_MAP, write_seed

from pipelines.atomic import atomic_file, atomic_folder, remove_stale, tempfiles_in
from pipelines.cli import main

HOST = socket.gethostname()


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The id of a process that has exited (and been reaped): os.kill(pid, 0) says it is gone."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _leftover(parent, name: str, kind: str, pid: int, host: str = HOST, suffix: str = "", folder: bool = True):
    path = parent / f".{name}.{kind}-{pid}@{host}-abcd_123{suffix}"
    if folder:
        path.mkdir(parents=True)
        (path / "half-written.tfrecord").write_bytes(b"x" * 100)
    else:
        path.write_text("half")
    return path


def test_the_next_write_removes_what_killed_runs_left_and_nothing_else(tmp_path, dead_pid):
    dead = _leftover(tmp_path, "out", "tmp", dead_pid)
    dead_old = _leftover(tmp_path, "out", "old", dead_pid)
    live = _leftover(tmp_path, "out", "tmp", os.getpid())  # this process: still writing
    elsewhere = _leftover(tmp_path, "out", "tmp", dead_pid, host="another-host")  # its process is not ours to see
    other_output = _leftover(tmp_path, "output", "tmp", dead_pid)
    with atomic_folder(tmp_path / "out") as tmp:
        assert tmp.name.startswith(f".out.tmp-{os.getpid()}@{HOST}-")
        (tmp / "summary.json").write_text("{}")
    assert not dead.exists() and not dead_old.exists()
    assert live.exists() and elsewhere.exists() and other_output.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.json"]

    dead_file = _leftover(tmp_path, "x.config", "tmp", dead_pid, suffix=".tmp", folder=False)
    live_file = _leftover(tmp_path, "x.config", "tmp", os.getpid(), suffix=".tmp", folder=False)
    with atomic_file(tmp_path / "x.config") as temporary:
        temporary.write_text("new")
    assert not dead_file.exists() and live_file.exists() and (tmp_path / "x.config").read_text() == "new"


def test_an_output_moved_aside_by_a_run_killed_mid_swap_is_put_back(tmp_path, dead_pid):
    old = _leftover(tmp_path, "out", "old", dead_pid)
    (old / "out").mkdir()
    (old / "out" / "summary.json").write_text("previous")
    assert remove_stale(tmp_path / "out") == [old]
    assert (tmp_path / "out" / "summary.json").read_text() == "previous" and not old.exists()


def test_convert_cleans_up_after_a_killed_convert(tmp_path, dead_pid):
    src = write_seed(tmp_path / "src")
    dead = _leftover(tmp_path, "data", "tmp", dead_pid)
    live = _leftover(tmp_path, "data", "tmp", os.getpid())
    assert main(["convert", str(src), "--out", str(tmp_path / "data"), "--label-map", str(LABEL_MAP), "--quiet"]) == 0
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "data", "src"]


def test_tempfiles_go_into_the_given_folder_for_the_block(tmp_path):
    before = tempfile.gettempdir()
    with tempfiles_in(tmp_path / ".scratch") as folder:
        made = tempfile.mkdtemp()
        assert os.path.dirname(made) == str(folder)
    assert not folder.exists() and tempfile.gettempdir() == before
