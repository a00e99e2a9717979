"""Pilot tests of the template library, personas, memory, / commands and the exact context."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, OptionList, Static

from tests.app_fixtures import (
    chat,
    export_data,
    make_app,
    make_paths,
    notifications,
    pilot_test,
    send,
    wait_for,
    wait_idle,
)
from tui.app.messages import ContextPlanned
from tui.app.screens.memory import MemoryList, MemoryScreen
from tui.app.screens.personas import PersonasScreen
from tui.app.screens.template_form import TemplateFormScreen
from tui.app.screens.templates import TemplateList, TemplatesScreen
from tui.engine.scripted import ScriptedEngine
from tui.prompting.memory import MemoryStore
from tui.prompting.personas import PersonaLibrary
from tui.prompting.templates import TemplateLibrary, Variable
from tui.store import Store


def add_template(store: Store) -> None:
    TemplateLibrary(store).create(
        "greet-someone", "Say hello to {{ who }} in {{ lang }}.", title="Greet someone",
        variables=[Variable("who", "the person to greet"), Variable("lang", "language", "French")],
        tags=["testing"])


def preview(app: object) -> str:
    screen = app.screen  # type: ignore[attr-defined]
    return str(screen.query_one("#form-preview", Static).render())


@pilot_test
async def test_library_search_fill_preview_send(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    add_template(store)
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_idle(pilot)
        await pilot.press("alt+t")
        await wait_for(pilot, lambda: isinstance(app.screen, TemplatesScreen))
        screen = app.screen
        assert isinstance(screen, TemplatesScreen)
        screen.query_one("#templates-search", Input).value = "greet hello"
        await pilot.pause()
        assert screen.templates[0].name == "greet-someone"
        screen.query_one(TemplateList).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TemplateFormScreen))
        # the required variable is missing: the preview says so
        assert "missing required variable 'who'" in preview(app)
        app.copy_to_clipboard("Ada")
        await pilot.press("ctrl+v")  # the first field (who) has focus
        await pilot.pause()
        assert preview(app) == "Say hello to Ada in French."
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(engine.requests) == 1)
        await wait_idle(pilot)
        assert engine.requests[-1][-1].content == "Say hello to Ada in French."
        assert not isinstance(app.screen, TemplatesScreen | TemplateFormScreen)


@pilot_test
async def test_slash_template_puts_filled_prompt_in_box(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    add_template(store)
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, "/template greet-someone")
        await wait_for(pilot, lambda: isinstance(app.screen, TemplateFormScreen))
        app.screen.query_one("#var-who", Input).value = "Bob"
        app.screen.query_one("#var-lang", Input).value = "Spanish"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, TemplateFormScreen))
        assert chat(app).pane.prompt.text == "Say hello to Bob in Spanish."
        assert engine.requests == []
        # an unknown template is a notice, not a crash
        await send(pilot, "/template nope")
        assert any("no template named 'nope'" in m for _, m in notifications(app))


@pilot_test
async def test_library_duplicate_builtin_and_delete(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_idle(pilot)
        await pilot.press("alt+t")
        await wait_for(pilot, lambda: isinstance(app.screen, TemplatesScreen))
        screen = app.screen
        assert isinstance(screen, TemplatesScreen)
        first = screen.current()
        assert first is not None and first.builtin
        await pilot.press("down", "e")  # into the list; built-ins are read-only
        assert any("read-only" in m for _, m in notifications(app))
        await pilot.press("d")
        await pilot.pause()
        copy = screen.current()
        assert copy is not None and copy.name == f"{first.name}-copy" and not copy.builtin
        await pilot.press("delete")
        await pilot.press("y")
        await pilot.pause()
        assert not TemplateLibrary(app.store).exists(copy.name)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, TemplatesScreen))


@pilot_test
async def test_persona_picker_reaches_engine(tmp_path: Path) -> None:
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_idle(pilot)
        persona = PersonaLibrary(app.store).get("teacher")
        await pilot.press("alt+p")
        await wait_for(pilot, lambda: isinstance(app.screen, PersonasScreen))
        screen = app.screen
        assert isinstance(screen, PersonasScreen)
        listing = screen.query_one("#persona-list", OptionList)
        listing.highlighted = 1 + [p.id for p in screen.personas].index("teacher")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, PersonasScreen))
        assert chat(app).pane.meta.options.persona == "teacher"
        await send(pilot, "explain tides")
        system = engine.requests[-1][0]
        assert system.role == "system" and persona.system_block() in system.content
        # /persona none takes it away
        await send(pilot, "/persona none")
        await send(pilot, "again")
        assert persona.system_block() not in engine.requests[-1][0].content


@pilot_test
async def test_slash_persona_by_name(tmp_path: Path) -> None:
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, "/persona Coding assistant")
        assert chat(app).pane.meta.options.persona == "coder"
        await send(pilot, "/persona nobody")
        assert any("no persona" in m for _, m in notifications(app))


@pilot_test
async def test_remember_and_memory_on_off(tmp_path: Path) -> None:
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, "/remember My cat is called Miso")
        assert [m.text for m in MemoryStore(app.store).list_memories()] == [
            "My cat is called Miso"]
        assert engine.requests == []  # a / command is not sent
        await send(pilot, "what is my cat called?")
        assert "Miso" in engine.requests[-1][0].content
        await send(pilot, "/memory off")
        await send(pilot, "and now?")
        assert all("Miso" not in m.content for m in engine.requests[-1])
        await send(pilot, "/memory on")
        await send(pilot, "/help")
        assert any("/remember TEXT" in m for _, m in notifications(app))


@pilot_test
async def test_memory_screen_add_disable_delete(tmp_path: Path) -> None:
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_idle(pilot)
        await pilot.press("alt+m")
        await wait_for(pilot, lambda: isinstance(app.screen, MemoryScreen))
        screen = app.screen
        box = screen.query_one("#memory-text", Input)
        box.focus()
        box.value = "I prefer metric units"
        await pilot.press("enter")
        await pilot.pause()
        memories = MemoryStore(app.store).list_memories()
        assert [m.text for m in memories] == ["I prefer metric units"]
        screen.query_one(MemoryList).focus()
        await pilot.press("space")  # disable
        await pilot.pause()
        assert MemoryStore(app.store).list_memories()[0].enabled is False
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, MemoryScreen))
        await send(pilot, "units?")
        assert all("metric" not in m.content for m in engine.requests[-1])
        await pilot.press("alt+m")
        await wait_for(pilot, lambda: isinstance(app.screen, MemoryScreen))
        app.screen.query_one(MemoryList).focus()
        await pilot.press("delete")
        await pilot.pause()
        assert MemoryStore(app.store).list_memories() == []


@pilot_test
async def test_memory_proposals_accept(tmp_path: Path) -> None:
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, "I live in Lisbon and I am a nurse")
        engine._tokens = ["- The user lives in Lisbon\n", "- The user is a nurse\n"]
        await pilot.press("alt+m")
        await wait_for(pilot, lambda: isinstance(app.screen, MemoryScreen))
        screen = app.screen
        assert isinstance(screen, MemoryScreen)
        await pilot.press("p")
        await wait_for(pilot, lambda: len(screen.proposals) == 2)
        await pilot.press("enter")  # accept the first
        await pilot.pause()
        await pilot.press("delete")  # reject the second
        await pilot.pause()
        assert [m.text for m in MemoryStore(app.store).list_memories()] == [
            "The user lives in Lisbon"]
        assert screen.proposals == []


LONG_ANSWER = " ".join(f"w{i}" for i in range(30))


@pilot_test
async def test_small_window_dims_left_out_messages(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    store.import_json(export_data("Long talk", 6, reply=lambda _i: LONG_ANSWER))
    engine = ScriptedEngine("ok", n_ctx=256)
    app = make_app(tmp_path, engine=engine, store=store)
    planned: list[ContextPlanned] = []

    def hook(message: object) -> None:
        if isinstance(message, ContextPlanned):
            planned.append(message)

    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await wait_idle(pilot)
        pane = chat(app).pane
        await send(pilot, "and finally?")
        sent = engine.requests[-1]
        assert sent[-1].content == "and finally?"
        assert engine.count_tokens(messages=sent) + 128 <= 256
        log = pane.log_view
        assert log.outside
        first = log.views()[0]
        assert first.message_id in log.outside and first.has_class("-outside")
        assert not log.views()[-1].has_class("-outside")
        # the question of the first turn is not in the prompt
        assert all(m.content != "Long talk question 0" for m in sent)
        plan = planned[-1]
        assert plan.n_ctx == 256 and plan.tokens.reserve == 128
        assert plan.tokens.used <= 256 and set(plan.left_out) == log.outside


@pilot_test
async def test_message_larger_than_window_is_a_notice(tmp_path: Path) -> None:
    engine = ScriptedEngine("ok", n_ctx=128)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, " ".join(["word"] * 300))
        assert engine.requests == []
        messages = app.store.messages(chat(app).meta.id)
        assert [m.role for m in messages] == ["user"]  # kept, nothing lost
        assert any(s == "error" and "context window" in m for s, m in notifications(app))


@pilot_test
async def test_palette_finds_templates(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    add_template(store)
    app = make_app(tmp_path, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_idle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Greet someone")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TemplateFormScreen))
        assert app.screen.template.name == "greet-someone"  # type: ignore[attr-defined]


@pilot_test
async def test_create_template_and_context_command(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, "/context summarize")
        assert chat(app).pane.meta.options.context_policy == "summarize"
        await pilot.press("alt+t")
        await wait_for(pilot, lambda: isinstance(app.screen, TemplatesScreen))
        await pilot.press("ctrl+n")
        await pilot.pause()
        editor = app.screen
        editor.query_one("#edit-name", Input).value = "bad name"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "bad template name" in str(editor.query_one("#edit-error", Static).render())
        editor.query_one("#edit-name", Input).value = "ask-why"
        from textual.widgets import TextArea

        editor.query_one("#edit-body", TextArea).load_text("Why is {{ thing }}?")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, TemplatesScreen))
        made = TemplateLibrary(app.store).get("ask-why")
        assert [v.name for v in made.variables] == ["thing"]
        assert app.screen.current().name == "ask-why"  # type: ignore[attr-defined]
