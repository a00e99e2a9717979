"""Keys as a real terminal sends them (tmux): alt+enter adds a line, it does not send (21.5)."""

from __future__ import annotations

from pathlib import Path

from tests.test_tmux_e2e import Tmux, _lmdesk_command, pytestmark, tmux  # noqa: F401


def test_alt_enter_and_ctrl_j_add_a_line(tmux: Tmux, tmp_path: Path) -> None:  # noqa: F811
    tmux.start(_lmdesk_command(), width=100, height=30)
    tmux.wait_for(lambda s: "Welcome to lmdesk" in s)
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "Ask anything" in s and "Welcome to lmdesk" not in s)
    tmux.keys("-l", "first line")
    tmux.keys("M-Enter")  # tmux sends ESC CR, as screen and xterm (metaSendsEscape) do
    tmux.keys("-l", "second line")
    tmux.keys("C-j")
    tmux.keys("-l", "third line")
    tmux.wait_for(lambda s: "third line" in s)
    tmux.keys("Enter")
    # the reply's own figures (the one-line monitor at this width says "tok/s" from the start)
    tmux.wait_for(lambda s: "ttft" in s and "Writing the reply" not in s, timeout=120)
    tmux.keys("C-q")
    screen = tmux.wait_for(lambda s: "LMDESK-EXITED-" in s, timeout=30)
    assert "LMDESK-EXITED-0" in screen, screen
    from tui.store import Store

    with Store.open(tmp_path / "data", read_only=True) as store:
        cid = store.last_conversation_id()
        assert cid is not None
        prompts = [m.content for m in store.messages(cid) if m.role == "user"]
    assert prompts == ["first line\nsecond line\nthird line"]
