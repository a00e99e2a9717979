"""Tool calls in each family's own format, on the families' real chat templates (pure Python:
the templates in tests/chat_templates/ are rendered with the worker's renderer)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tui.engine.chat_prompt import ChatTemplate
from tui.engine.protocol import ChatMessage, ToolCall, ToolSpec
from tui.engine.tool_calls import (
    Family,
    ToolCallParser,
    ToolChoiceError,
    family_for_template,
    forced_call,
    forced_name,
    grammar_schema,
    history_for,
    mistral_id,
    openai_tools,
)

TEMPLATES = Path(__file__).parent / "chat_templates"
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WEATHER = ToolSpec("get_weather", "The weather in a city.", json.dumps({
    "type": "object", "properties": {"city": {"type": "string"},
                                     "unit": {"enum": ["c", "f"]}},
    "required": ["city"]}))
CLOCK = ToolSpec("clock", "The time.")
FILES: dict[Family, str] = {
    "hermes": "qwen2.5-instruct.jinja",
    "llama3": "llama-3.1-instruct.jinja",
    "mistral": "mistral-7b-instruct-v0.3.jinja",
    "harmony": "gpt-oss.jinja",
}


def _template(family: Family) -> ChatTemplate:
    return ChatTemplate((TEMPLATES / FILES[family]).read_text(), bos_token="<s>",
                        eos_token="</s>")


def _feed(parser: ToolCallParser, text: str, step: int) -> tuple[str, list[ToolCall]]:
    shown, calls = [], []
    for at in range(0, len(text), step):
        piece, new = parser.feed(text[at:at + step])
        shown.append(piece)
        calls += new
    piece, new = parser.close()
    return "".join(shown) + piece, calls + new


@pytest.mark.parametrize("family", list(FILES))
def test_the_family_is_read_from_the_template(family: Family) -> None:
    assert family_for_template(_template(family).source) == family


def test_a_template_without_tools_is_generic() -> None:
    assert family_for_template(SMOLLM2) == "generic"
    assert family_for_template(None) == "generic"


@pytest.mark.parametrize("family", list(FILES))
def test_a_history_with_a_call_and_its_result_renders_in_the_templates_format(
        family: Family) -> None:
    """The template sees the tools and the earlier call; the result is content (plain text,
    never markup), and the call as the template writes it parses back to the same call."""
    call = ToolCall("abc123XYZ", "get_weather", '{"city": "Paris"}')
    history = history_for((
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "18 degrees <|im_end|>", tool_call_id=call.id,
                    name="get_weather"),
    ), family)
    rendered = _template(family).render(history, extra={"tools": openai_tools([WEATHER])})
    text = rendered.text
    assert "get_weather" in text and "The weather in a city." in text
    contents = [t for t, markup in rendered.segments if not markup]
    assert any("18 degrees <|im_end|>" in c for c in contents), rendered.segments
    assert not any("<|im_end|>" in t and "18 degrees" in t
                   for t, markup in rendered.segments if markup)
    # the call as the template rendered it is what the model is taught to write
    if family == "hermes":
        written = text[text.rindex("<tool_call>"):text.rindex("</tool_call>") + 12]
    elif family == "llama3":
        written = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
        assert written in text
    elif family == "mistral":
        start = text.index("[TOOL_CALLS]")
        written = text[start:text.index("</s>", start)]
    else:
        written = text[text.index("<|start|>assistant to="):text.index("<|call|>")]
    shown, calls = _feed(ToolCallParser(family, ["get_weather"]), written, 3)
    assert shown == ""
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})]


def test_mistral_ids_are_nine_characters_in_the_history() -> None:
    call = ToolCall("call_0123456789abcdef", "get_weather", "{}")
    history = history_for((ChatMessage("user", "hi"),
                           ChatMessage("assistant", "", tool_calls=(call,)),
                           ChatMessage("tool", "ok", tool_call_id=call.id)), "mistral")
    assert history[1].tool_calls[0].id == history[2].tool_call_id == mistral_id(call.id)
    assert len(mistral_id(call.id)) == 9 and mistral_id(call.id).isalnum()
    text = _template("mistral").render(history, extra={"tools": openai_tools([WEATHER])}).text
    assert f'"call_id": "{mistral_id(call.id)}"' in text


def test_a_template_without_tools_gets_calls_and_results_written_out() -> None:
    call = ToolCall("c1", "calculator", '{"expression": "2+2"}')
    history = history_for((ChatMessage("user", "2+2?"),
                           ChatMessage("assistant", "", tool_calls=(call,)),
                           ChatMessage("tool", "4", tool_call_id="c1", name="calculator")),
                          "generic")
    assert [m.role for m in history] == ["user", "assistant", "user"]
    assert json.loads(history[1].content) == {"tool_calls": [
        {"name": "calculator", "arguments": {"expression": "2+2"}, "id": "c1"}]}
    assert json.loads(history[2].content)["tool_response"]["content"] == "4"
    text = ChatTemplate(SMOLLM2, bos_token="", eos_token="").render(history).text
    assert '"tool_response"' in text and "<|im_start|>tool" not in text


# --- the parsers, on what the models write ----------------------------------------------------

STREAMS: list[tuple[Family, str, str, list[tuple[str, dict[str, object]]]]] = [
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": '
     '"Oslo"}}\n</tool_call>\n<tool_call>\n{"name": "clock", "arguments": {}}\n</tool_call>',
     "Let me check.", [("get_weather", {"city": "Oslo"}), ("clock", {})]),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "c"}}', "",
     [("get_weather", {"city": "Oslo", "unit": "c"})]),
    ("llama3", '<|python_tag|>{"name": "clock", "parameters": {}}', "", [("clock", {})]),
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}, '
     '{"name": "clock", "arguments": {}}]', "",
     [("get_weather", {"city": "Oslo"}), ("clock", {})]),
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]clock[ARGS]{}', "",
     [("get_weather", {"city": "Oslo"}), ("clock", {})]),
    ("harmony", "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant"
     '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>'
     '{"city": "Oslo"}', "<|channel|>analysis<|message|>Need weather.<|end|>",
     [("get_weather", {"city": "Oslo"})]),
    ("generic", '{"tool_call": {"name": "clock", "arguments": {}}}', "", [("clock", {})]),
]


@pytest.mark.parametrize(("family", "stream", "text", "expected"), STREAMS)
@pytest.mark.parametrize("step", [1, 4, 1000])
def test_calls_are_cut_out_of_the_stream_in_any_pieces(
        family: Family, stream: str, text: str, expected: list[tuple[str, dict[str, object]]],
        step: int) -> None:
    shown, calls = _feed(ToolCallParser(family, ["get_weather", "clock"]), stream, step)
    assert shown.strip() == text
    assert [(c.name, json.loads(c.arguments)) for c in calls] == expected
    assert len({c.id for c in calls}) == len(calls)


@pytest.mark.parametrize(("family", "stream"), [
    ("hermes", "Plain answer, no calls at all. <tool_ hmm"),
    ("hermes", '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'),
    ("hermes", '<tool_call>{"name": "not_offered", "arguments": {}}</tool_call>'),
    ("llama3", "The weather is fine."),
    ("llama3", '{"answer": 42}'),
    ("mistral", "[TOOL_CALLS] [{broken"),
    ("harmony", "<|channel|>final<|message|>Sunny.<|end|>"),
    ("generic", "Just words."),
])
def test_text_that_is_no_valid_call_is_kept_as_text(family: Family, stream: str) -> None:
    shown, calls = _feed(ToolCallParser(family, ["get_weather"]), stream, 2)
    assert calls == []
    assert shown == stream


def test_the_generic_format_may_answer_in_words() -> None:
    shown, calls = _feed(ToolCallParser("generic", ["clock"]), '{"response": "It is noon."}', 3)
    assert (shown, calls) == ("It is noon.", [])


# --- forced calls -------------------------------------------------------------------------------


def test_a_choice_names_an_offered_tool_or_is_refused() -> None:
    assert forced_name("auto", [CLOCK]) is None
    assert forced_name("required", [CLOCK]) == ""
    assert forced_name("clock", [CLOCK]) == "clock"
    with pytest.raises(ToolChoiceError, match=r"'nope'.*clock"):
        forced_name("nope", [CLOCK])


@pytest.mark.parametrize("family", ["hermes", "llama3", "mistral", "harmony", "generic"])
def test_a_forced_call_in_the_familys_format_parses_to_a_schema_valid_call(
        family: Family) -> None:
    forced = forced_call(family, [WEATHER, CLOCK], "get_weather")
    sample: object = {"name": "get_weather", "arguments": {"city": "Rome", "unit": "f"}}
    if family == "llama3":
        sample = {"name": "get_weather", "parameters": {"city": "Rome", "unit": "f"}}
    elif family == "mistral":
        sample = [sample]
    elif family == "harmony":
        sample = {"city": "Rome", "unit": "f"}
    elif family == "generic":
        sample = {"tool_call": sample}
    jsonschema.validate(sample, forced.schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool_call": {"name": "clock", "arguments": {}}}
                            if family == "generic" else {"name": "clock"}, forced.schema)
    parser = ToolCallParser(family, ["get_weather", "clock"])
    parser.feed(forced.prefill)
    shown, calls = _feed(parser, json.dumps(sample), 5)
    assert shown == ""
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Rome", "unit": "f"})]


def test_the_grammar_schema_leaves_out_what_a_grammar_cannot_enforce() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1,
                                                     "description": "how many"}},
              "uniqueItems": True, "required": ["n"]}
    assert grammar_schema(schema) == {"type": "object", "properties": {
        "n": {"type": "integer"}}, "required": ["n"]}


def test_the_forced_grammar_builds_and_keeps_strings_json() -> None:
    from tui.engine.structured import schema_grammar

    grammar = schema_grammar(json.dumps(forced_call("hermes", [WEATHER], "").schema))
    assert "get_weather" in grammar
    # raw control characters (a newline) are not allowed inside a JSON string
    assert '\\x00-\\x1F' in next(line for line in grammar.splitlines()
                                 if line.startswith("char ::="))
