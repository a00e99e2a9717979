"""Quitting on a full disk (issue 22.12): one line, not a traceback; the data as it was."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from tests.app_fixtures import make_paths, seed
from tui.app import main as app_main
from tui.config import Settings
from tui.engine.protocol import LoadParams
from tui.store import Store


def test_quitting_on_a_full_disk_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_paths(tmp_path)
    with Store.open(paths.data_dir) as store:
        cid = seed(store, "Kept", 2)
    index_before = (paths.data_dir / "index.json").read_bytes()
    real_write = os.write

    def run(app: Any) -> None:
        """The app ran: it opened a conversation (written at close), then the disk filled."""
        app.store.messages(cid)

        def full(fd: int, payload: Any) -> int:
            if ".tmp-" in os.readlink(f"/proc/self/fd/{fd}"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, payload)

        monkeypatch.setattr(os, "write", full)

    monkeypatch.setattr("tui.app.app.LmdeskApp.run", run)
    code = app_main.run_app(Settings(), paths, LoadParams(model_path="none.gguf"), "none", [])
    monkeypatch.setattr(os, "write", real_write)
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmdesk: error: ") and "disk full" in err
    assert (paths.data_dir / "index.json").read_bytes() == index_before
    with Store.open(paths.data_dir) as again:  # and it opens again, nothing lost
        assert [m.content for m in again.messages(cid)][:1] == ["Kept question 0"]
