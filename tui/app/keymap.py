"""Every user action: its binding id, default keys, description. One table feeds the bindings,
the footer, the help screen and the command palette, so they never disagree.

Users remap keys in config.toml: ``[keymap]`` then ``binding_id = "keys"`` (comma-separated for
several keys), applied with ``App.set_keymap``. Keys are chosen to survive SSH and tmux: ctrl
letters that terminals send as plain control codes, function keys, escape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from textual.binding import Binding

from tui.i18n import N_, _

Scope = Literal["app", "chat"]


@dataclass(frozen=True)
class ActionSpec:
    id: str
    """Binding id, the name used in ``[keymap]``."""
    keys: str
    action: str
    description: str
    """Short text for the footer and the palette."""
    help: str
    scope: Scope = "chat"
    show: bool = False
    """Shown in the footer."""
    palette: bool = True

    def binding(self) -> Binding:
        return Binding(
            self.keys, self.action, self.description, show=self.show, id=self.id,
            priority=True, tooltip=self.help,
        )


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("new_conversation", "ctrl+n", "new_conversation", N_("New"),
               N_("Start a new conversation"), show=True),
    ActionSpec("toggle_sidebar", "ctrl+b", "toggle_sidebar", N_("Sidebar"),
               N_("Show or hide the conversation list")),
    ActionSpec("search", "ctrl+f", "search", N_("Search"),
               N_("Search all conversations"), show=True),
    ActionSpec("stop", "escape", "stop", N_("Stop"),
               N_("Stop the reply being written (the partial reply is kept)"), show=True),
    ActionSpec("regenerate", "ctrl+r", "regenerate", N_("Regenerate"),
               N_("Write the last reply again, keeping the old one"), show=True),
    ActionSpec("edit_last", "ctrl+e", "edit_last", N_("Edit"),
               N_("Edit the selected (else last) prompt and send it as a new version")),
    ActionSpec("continue_reply", "alt+g", "continue_reply", N_("Continue"),
               N_("Continue the last reply where it stopped (esc, or its token limit)")),
    ActionSpec("fork_conversation", "alt+f", "fork_conversation", N_("Fork"),
               N_("A new conversation with the history up to the selected (else last) message")),
    ActionSpec("delete_message", "alt+d", "delete_message", N_("Delete message"),
               N_("Delete the selected message and what follows it in every branch (asks)")),
    ActionSpec("copy_message", "ctrl+y", "copy_message", N_("Copy"),
               N_("Copy the selected message (else the last reply) to the clipboard"), show=True),
    ActionSpec("copy_code", "ctrl+g", "copy_code", N_("Copy code"),
               N_("Copy a numbered code block of the selected (else last) reply")),
    ActionSpec("system_prompt", "ctrl+s", "system_prompt", N_("System prompt"),
               N_("Edit this conversation's system prompt")),
    ActionSpec("models", "ctrl+o", "models", N_("Models"), N_("Choose a model")),
    ActionSpec("toggle_monitor", "f12", "toggle_monitor", N_("Monitor"),
               N_("Collapse or expand the monitor panel (RAM, CPU, VRAM, speed)")),
    ActionSpec("rename_conversation", "f2", "rename_conversation", N_("Rename"),
               N_("Rename this conversation")),
    ActionSpec("pin_conversation", "f3", "pin_conversation", N_("Pin"),
               N_("Pin or unpin this conversation at the top of the list")),
    ActionSpec("delete_conversation", "f8", "delete_conversation", N_("Delete"),
               N_("Delete this conversation (asks first)")),
    ActionSpec("export_conversation", "f6", "export_conversation", N_("Export"),
               N_("Export this conversation to Markdown or JSON")),
    ActionSpec("import_conversation", "f7", "import_conversation", N_("Import"),
               N_("Import a conversation from a JSON export")),
    ActionSpec("toggle_reasoning", "ctrl+t", "toggle_reasoning", N_("Details"),
               N_("Show or hide the reasoning and tool calls of the selected (else last) reply")),
    ActionSpec("toggle_thinking", "alt+r", "toggle_thinking", N_("Thinking"),
               N_("Let reasoning models think in this conversation, or ask them not to")),
    ActionSpec("load_earlier", "ctrl+l", "load_earlier", N_("Load earlier"),
               N_("Show earlier messages of a long conversation")),
    ActionSpec("focus_prompt", "f5", "focus_prompt", N_("Prompt"),
               N_("Move the cursor to the prompt")),
    ActionSpec("focus_log", "f4", "focus_log", N_("Messages"),
               N_("Select messages in the chat (up/down, then copy)")),
    ActionSpec("help", "f1", "help", N_("Help"), N_("Show every key binding"), scope="app",
               show=True),
    ActionSpec("change_theme", "f9", "change_theme", N_("Theme"), N_("Pick a theme"), scope="app"),
    ActionSpec("doctor", "f10", "doctor", N_("Doctor"),
               N_("The machine, what it can run, the install's health, the network"), scope="app"),
    ActionSpec("welcome", "alt+w", "welcome", N_("Welcome"),
               N_("The welcome note: where data is kept, what this machine could run"),
               scope="app"),
    ActionSpec("knowledge", "alt+k", "knowledge", N_("Knowledge bases"),
               N_("Create, index and attach knowledge bases to this conversation"), scope="app"),
    ActionSpec("open_source", "alt+o", "open_source", N_("Open source"),
               N_("Open a passage cited under the selected (else last) reply"), scope="app"),
    ActionSpec("compare", "alt+c", "compare", N_("Compare models"),
               N_("Send one prompt to two models side by side"), scope="app"),
    ActionSpec("serve", "alt+a", "serve", N_("Serve API"),
               N_("Serve the loaded model on 127.0.0.1 (OpenAI API) while you chat; again: stop"),
               scope="app"),
    ActionSpec("tools", "alt+x", "tools", N_("Tools"),
               N_("Tools the model may call here (built-in and MCP servers'), and which run "
                  "without asking"), scope="app"),
    ActionSpec("templates", "alt+t", "templates", N_("Templates"),
               N_("The template library: search, fill and use a prompt template"), scope="app"),
    ActionSpec("personas", "alt+p", "personas", N_("Personas"),
               N_("Choose this conversation's persona; edit personas"), scope="app"),
    ActionSpec("memory", "alt+m", "memory", N_("Memory"),
               N_("What lmdesk remembers about you; memory on/off for this conversation"),
               scope="app"),
    ActionSpec("tune", "alt+u", "tune", N_("Personalise"),
               N_("Fine-tune a model on your own pairs, step by step (LoRA)"), scope="app"),
    ActionSpec("mark_good", "alt+y", "mark_good", N_("Mark good"),
               N_("Mark the selected (else last) reply good, to tune a model on; again: unmark"),
               scope="app"),
    ActionSpec("quit", "ctrl+q", "quit", N_("Quit"), N_("Quit lmdesk"), scope="app"),
)

def specs(scope: Scope) -> list[ActionSpec]:
    return [spec for spec in ACTIONS if spec.scope == scope]


def bindings(scope: Scope) -> list[Binding]:
    return [spec.binding() for spec in specs(scope)]


def declared_bindings() -> dict[str, Binding]:
    """Every binding the app's screens and widgets declare in their ``BINDINGS``, by id.

    Read from the classes themselves (imported here, so only when a keymap is checked), so a
    binding added to a screen can be remapped without a second list to keep in step."""
    import importlib
    import pkgutil

    import tui.app.screens
    import tui.app.widgets

    found: dict[str, Binding] = {}
    for package in (tui.app.screens, tui.app.widgets):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for obj in vars(module).values():
                if not isinstance(obj, type) or obj.__module__ != module.__name__:
                    continue
                for binding in vars(obj).get("BINDINGS", ()) or ():
                    if isinstance(binding, Binding) and binding.id:
                        found[binding.id] = binding
    return found


def known_ids(extra: Iterable[str] = ()) -> set[str]:
    return {spec.id for spec in ACTIONS} | set(declared_bindings()) | set(extra)


PROMPT_KEYS: dict[str, str] = {"send": "enter", "newline": "ctrl+j,alt+enter,shift+enter"}
"""The prompt's own bindings (PromptInput): the prompt always has them, so they count too."""


def _global_keys(keymap: Mapping[str, str]) -> dict[str, str]:
    """Binding id -> keys of every binding live on the chat screen at once: the app's and
    the chat screen's actions (priority bindings) and the prompt's."""
    defaults = {spec.id: spec.keys for spec in ACTIONS} | PROMPT_KEYS
    return {bid: keymap.get(bid, keys) for bid, keys in defaults.items()}


def _collisions(keymap: Mapping[str, str]) -> dict[str, list[str]]:
    """Key -> the binding ids sharing it (only keys held by more than one)."""
    holders: dict[str, list[str]] = {}
    for bid, keys in _global_keys(keymap).items():
        for key in dict.fromkeys(k for k in keys.split(",") if k):
            holders.setdefault(key, []).append(bid)
    return {key: ids for key, ids in holders.items() if len(ids) > 1}


def check_keymap(keymap: Mapping[str, object]) -> tuple[dict[str, str], list[str]]:
    """Keep the entries that name a known binding with a key string and take no key another
    action already has; report the rest (a refused remap keeps the binding's own keys)."""
    good: dict[str, str] = {}
    problems: list[str] = []
    if not keymap:
        return good, problems
    known = known_ids()
    global_ids = {spec.id for spec in ACTIONS} | set(PROMPT_KEYS)
    for binding_id, keys in keymap.items():
        if binding_id not in known:
            problems.append(_("keymap: no binding called {binding_id!r}", binding_id=binding_id))
        elif not isinstance(keys, str) or not keys.strip():
            problems.append(_('keymap: {binding_id} should be a key like "ctrl+k"',
                              binding_id=binding_id))
        elif binding_id in global_ids and binding_id not in PROMPT_KEYS and any(
                len(k) == 1 and k.isprintable() for k in keys.replace(" ", "").split(",")):
            problems.append(_("keymap: {binding_id} = {keys!r} refused: a single character "
                              "would be taken from what you type in the prompt",
                              binding_id=binding_id, keys=keys))
        else:
            good[binding_id] = keys.replace(" ", "")
    while collisions := _collisions(good):
        key, ids = next(iter(collisions.items()))
        remapped = [bid for bid in ids if bid in good and key in good[bid].split(",")]
        if not remapped:
            break  # only built-in keys share it: not the user's doing
        for bid in remapped:
            others = ", ".join(i for i in ids if i != bid)
            problems.append(_("keymap: {bid} = {pop!r} refused: {key} is already {others}'s key",
                              bid=bid, pop=good.pop(bid), key=key, others=others))
    return good, problems


def effective_keys(spec_id: str, default: str, keymap: Mapping[str, str]) -> str:
    return keymap.get(spec_id, default)
