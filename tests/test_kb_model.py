"""A real answer from the default model with knowledge-base passages in the prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tui.engine.protocol import ChatMessage, Done, SamplingParams
from tui.kb import KBLibrary, retrieve_for_prompt

pytestmark = pytest.mark.model


def test_answer_cites_the_passage(tmp_path: Path, smollm_engine: Any) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "reactor.md").write_text(
        "# Zorblat reactor\n\n## Cooling\n\nThe Zorblat reactor is cooled by liquid gallium.\n")
    (docs / "canteen.md").write_text("# Canteen\n\nLunch is served at noon on floor two.\n")
    kb = KBLibrary(tmp_path / "data").create("plant", [docs])
    kb.reindex()
    question = "What is the Zorblat reactor cooled by?"
    ctx = retrieve_for_prompt([kb], question, smollm_engine, 400)

    # robust: the right file is source [1], the prompt carries it numbered, within budget
    assert ctx.sources[0].path == str(docs / "reactor.md") and ctx.sources[0].n == 1
    assert ctx.sources[0].start == 1 and ctx.sources[0].end == 5
    assert "[1] " in ctx.system_block and "gallium" in ctx.passages[0]
    assert "cite" in ctx.system_block
    assert 0 < ctx.tokens <= 400
    assert ctx.tokens == smollm_engine.count_tokens(ctx.system_block)

    messages = [ChatMessage("system", ctx.system_block), ChatMessage("user", question)]
    done = None
    for event in smollm_engine.generate(messages, SamplingParams(temperature=0.0, seed=1,
                                                                 max_tokens=48)):
        if isinstance(event, Done):
            done = event
    assert done is not None and done.error is None
    # the 135M model repeats the fact from passage [1] at temperature 0
    assert "gallium" in done.text.lower(), done.text
