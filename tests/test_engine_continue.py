"""A conversation that ends with an assistant message is continued, not answered again."""

from __future__ import annotations

from typing import Any

from tui.engine.chat_prompt import continued, plain_transcript
from tui.engine.protocol import ChatMessage, Done, SamplingParams


def _done(engine: Any, messages: tuple[ChatMessage, ...], max_tokens: int) -> Done:
    sampling = SamplingParams(temperature=0.0, top_k=1, max_tokens=max_tokens, seed=1)
    events = list(engine.generate(messages, sampling))
    done = events[-1]
    assert isinstance(done, Done) and done.error is None
    return done


def test_a_length_cut_reply_is_continued_where_it_ended(smollm_engine: Any) -> None:
    question = ChatMessage("user", "Explain what a CPU does in a computer.")
    cut = _done(smollm_engine, (question,), 8)
    assert cut.stats.stop_reason == "length" and cut.text
    longer = _done(smollm_engine, (question,), 16)
    more = _done(smollm_engine, (question, ChatMessage("assistant", cut.text)), 8)
    # the same reply going on (greedy: the first words are those of one longer reply), not a
    # new reply, which would start over ("The CPU ...")
    first_word = more.text.split()[0]
    assert longer.text.startswith(cut.text + more.text[: more.text.index(first_word)]
                                  + first_word), (cut.text, more.text, longer.text)
    # the prompt is the earlier one plus the reply so far: no end of turn, no new turn
    assert more.stats.prompt_tokens <= cut.stats.prompt_tokens + cut.stats.generated_tokens + 1
    asked_again = smollm_engine.count_tokens(messages=(
        question, ChatMessage("assistant", cut.text), ChatMessage("user", "go on")))
    assert asked_again > more.stats.prompt_tokens


def test_what_is_rendered_for_a_continuation() -> None:
    user, partial = ChatMessage("user", "hi"), ChatMessage("assistant", "Hello, I")
    assert continued((user, partial)) == ((user,), "Hello, I")
    assert continued((user,)) == ((user,), "")
    assert continued((partial,)) == ((partial,), "")  # nothing before it: a plain prompt
    text, _stops = plain_transcript((user, partial))
    assert text.endswith("User: hi\nAssistant: Hello, I")
