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


@pytest.mark.parametrize("closing", ["add", "add_live"])
def test_a_send_cut_short_by_quitting_keeps_the_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closing: str
) -> None:
    """ctrl+q pressed right after enter: the chat log is being torn down while the send
    mounts the prompt or the reply's placeholder. No crash; the prompt is in the store."""
    import asyncio

    from textual.widget import MountError

    from tests.app_fixtures import chat, make_app
    from tui.app.widgets.chat_log import ChatLog

    async def torn_down(self: ChatLog, message: Any) -> Any:
        raise MountError("the app is closing")

    async def scenario() -> None:
        app = make_app(tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            pane = chat(app).pane
            monkeypatch.setattr(ChatLog, closing, torn_down)
            assert await pane.send("Are you there?")
            await pilot.pause(0.2)
            assert app.is_running and pane.job is None
            assert app._exception is None
            assert [m.content for m in app.store.messages(pane.meta.id)] == ["Are you there?"]

    asyncio.run(scenario())
