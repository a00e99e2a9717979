"""Command palette providers: every action, and every conversation by title."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.app.keymap import ACTIONS, ActionSpec
from tui.display import count
from tui.i18n import _
from tui.store import ConversationMeta, StoreError

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp


class ActionsProvider(Provider):
    """The app's actions, with their current keys."""

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    def _label(self, spec: ActionSpec) -> str:
        return _("{description}: {help} ({key})", description=_(spec.description),
                 help=_(spec.help), key=self.lmdesk.key_for(spec.id))

    def _command(self, spec: ActionSpec) -> Callable[[], Awaitable[None]]:
        return partial(self.lmdesk.run_spec, spec.id)

    async def discover(self) -> Hits:
        for spec in ACTIONS:
            if spec.palette:
                yield DiscoveryHit(self._label(spec), self._command(spec))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in ACTIONS:
            if not spec.palette:
                continue
            label = self._label(spec)
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), self._command(spec), text=label)


class ConversationsProvider(Provider):
    """Open a conversation by typing part of its title."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._conversations: list[ConversationMeta] = []

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    async def startup(self) -> None:
        try:
            self._conversations = self.lmdesk.store.list_conversations()
        except StoreError:
            self._conversations = []

    def _command(self, meta: ConversationMeta) -> Callable[[], Awaitable[None]]:
        return partial(self.lmdesk.open_conversation, meta.id)

    async def discover(self) -> Hits:
        for meta in self._conversations[:20]:
            yield DiscoveryHit(_("Open: {title}", title=meta.title), self._command(meta),
                               help=count(meta.message_count, "message"))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for meta in self._conversations:
            label = _("Open: {title}", title=meta.title)
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), self._command(meta), text=label,
                          help=count(meta.message_count, "message"))


class TemplatesProvider(Provider):
    """Fill a prompt template by typing part of its name, title, tags or text."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._templates: list[tuple[str, str, str]] = []

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    async def startup(self) -> None:
        from tui.prompting.templates import PromptingError, TemplateLibrary

        try:
            found = TemplateLibrary(self.lmdesk.store).list_templates()
        except (PromptingError, StoreError):
            found = []
        self._templates = [
            (t.name, f"Template: {t.title or t.name}",
             " ".join((t.name, *t.tags, t.description)))
            for t in found
        ]

    def _command(self, name: str) -> Callable[[], None]:
        return partial(self.lmdesk.library.open_template_form, name)

    async def discover(self) -> Hits:
        for name, label, detail in self._templates[:10]:
            yield DiscoveryHit(label, self._command(name), help=detail)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, label, detail in self._templates:
            score = max(matcher.match(label), matcher.match(detail) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(label), self._command(name), text=label,
                          help=detail)
