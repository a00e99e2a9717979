"""Knowledge bases in the app: create one from paths, reindex it with a progress bar (files,
chunks, time left) that can be cancelled, and attach knowledge bases to the open conversation
(their names go in the conversation's options). Also the passage viewer that opens a
source cited under a reply at its lines.

Listing and indexing touch the disk, so they run in thread workers posting typed Messages."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, ProgressBar, Static

from tui.app.screens.confirm import MODAL_CSS
from tui.app.widgets.reply_lines import source_label
from tui.display import count
from tui.i18n import N_, _
from tui.kb import IngestReport, KBError, KBInfo, KBLibrary, Progress
from tui.store import ConversationOptions

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

PROGRESS_EVERY_S = 0.1
CONTEXT_LINES = 3
"""Lines shown above and below a cited passage."""
MAX_PASSAGE_LINES = 400


def attached_kbs(options: ConversationOptions) -> list[str]:
    return list(options.knowledge_bases)


def split_paths(text: str) -> list[str]:
    """Paths typed in one line: separated by ``;`` (a path may hold spaces)."""
    return [p.strip() for p in text.split(";") if p.strip()]


class KBListed(Message):
    def __init__(self, infos: list[KBInfo], problems: list[str]) -> None:
        super().__init__()
        self.infos = infos
        self.problems = problems


class KBProgress(Message):
    def __init__(self, name: str, progress: Progress) -> None:
        super().__init__()
        self.name = name
        self.progress = progress


class KBIndexed(Message):
    def __init__(self, name: str, report: IngestReport | None, error: str = "") -> None:
        super().__init__()
        self.name = name
        self.report = report
        self.error = error


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return _("time left: estimating")
    if seconds < 60:
        return f"{seconds:.0f} s left"
    return _("{value:.0f} min left", value=seconds / 60)


class KBTable(DataTable[str]):
    """The knowledge bases; single keys act on the selected one, only while the table has
    focus (in the name and paths boxes they are typed)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "screen.toggle_attach", N_("Attach"), id="kb.attach"),
        Binding("i", "screen.reindex", N_("Reindex"), id="kb.reindex"),
        Binding("x", "screen.cancel_index", N_("Cancel indexing"), id="kb.cancel"),
        Binding("n", "screen.new", N_("New"), id="kb.new"),
    ]


class KBField(Input):
    """The name or paths box: up goes to the list."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "screen.focus_table", N_("List"), show=False, id="kb.list"),
    ]


class KnowledgeScreen(ModalScreen[None]):
    """The knowledge bases, and which of them the open conversation uses."""

    DEFAULT_CSS = (
        "KnowledgeScreen {" + MODAL_CSS + """
        & > Vertical { width: 110; height: 90%; }
        #kb-table { height: 1fr; }
        #kb-new { height: auto; }
        #kb-new > Input { width: 1fr; }
        #kb-new > #kb-name { width: 24; }
        #kb-progress { width: 1fr; }
        #kb-status { color: $text-muted; height: auto; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", N_("Close"), id="kb.close"),
    ]

    def __init__(self, conversation_id: str | None) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self.infos: list[KBInfo] = []
        self.attached: list[str] = []
        self.indexing: str | None = None
        self.last_report: IngestReport | None = None
        self._cancel = threading.Event()

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    @property
    def library(self) -> KBLibrary:
        return KBLibrary(self.lmdesk.paths.data_dir)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = _("Knowledge bases")
            yield KBTable(id="kb-table", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="kb-new"):
                yield KBField(placeholder=_("name of a new one"), id="kb-name")
                yield KBField(placeholder=_("folders or files to index (separate with ;)"),
                              id="kb-paths")
            yield ProgressBar(id="kb-progress", show_eta=False)
            yield Static("", id="kb-status", markup=False)
            yield Static(
                _("in the list (↑ from the boxes): a attach/detach  i reindex  x cancel "
                  "indexing  n new   in the boxes: name, paths, enter   esc: close"),
                classes="modal-hint", markup=False,
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(_("attached"), _("name"), _("files"), _("chunks"), _("paths"))
        self.attached = self._read_attached()
        self.query_one(ProgressBar).display = False
        self._list()
        self.query_one("#kb-name", Input).focus()

    def on_unmount(self) -> None:
        self._cancel.set()

    # -- the list ------------------------------------------------------------------------------

    def _read_attached(self) -> list[str]:
        if self.conversation_id is None:
            return []
        with self.lmdesk.guard(_("Could not read the conversation")):
            return attached_kbs(self.lmdesk.store.get_conversation(self.conversation_id).options)
        return []

    @work(thread=True, exclusive=True, group="kb-list", exit_on_error=False)
    def _list(self) -> None:
        library = self.library
        infos: list[KBInfo] = []
        problems: list[str] = []
        try:
            names = library.names()
        except OSError as exc:
            names, problems = [], [str(exc)]
        for name in names:
            try:
                infos.append(library.open(name).info())
            except (KBError, OSError, ValueError) as exc:
                problems.append(str(exc))
        self.post_message(KBListed(infos, problems))

    def on_kblisted(self, event: KBListed) -> None:
        event.stop()
        self.infos = event.infos
        for problem in event.problems:
            self.lmdesk.notify(problem, severity="warning")
        self._fill()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for info in self.infos:
            mark = "✓" if info.name in self.attached else ""
            table.add_row(mark, info.name, str(info.files), str(info.chunks),
                          "; ".join(info.paths), key=info.name)
        if self.infos:
            table.move_cursor(row=min(max(row, 0), len(self.infos) - 1))
        if not self.infos and self.indexing is None:
            self._status(_("No knowledge base yet: type a name and a folder below, then enter."))

    def _selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.infos or not 0 <= table.cursor_row < len(self.infos):
            return None
        return self.infos[table.cursor_row].name

    def _status(self, text: str) -> None:
        self.query_one("#kb-status", Static).update(text)

    @property
    def status_text(self) -> str:
        return str(self.query_one("#kb-status", Static).content)

    # -- attach --------------------------------------------------------------------------------

    def action_toggle_attach(self) -> None:
        name = self._selected()
        if name is None:
            return
        names = [n for n in self.attached if n != name]
        if name not in self.attached:
            names.append(name)
        self.set_attached(names)

    def set_attached(self, names: list[str]) -> None:
        """Store the attached knowledge bases in the conversation (its other options kept)."""
        cid = self.conversation_id
        if cid is None:
            self.lmdesk.notify(_("Open a conversation first."), severity="warning")
            return
        app = self.lmdesk
        with app.guard(_("Could not attach the knowledge base")):
            new = app.store.update_options(cid, knowledge_bases=tuple(names))
            self.attached = attached_kbs(new.options)
            app.conversation_options_changed(cid, new.options)
            shown = ", ".join(self.attached) or "none"
            self._status(_("Knowledge bases of this conversation: {shown}", shown=shown))
            self._fill()

    # -- create and index ----------------------------------------------------------------------

    def action_new(self) -> None:
        self.query_one("#kb-name", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one(KBTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "kb-name":
            self.query_one("#kb-paths", Input).focus()
            return
        self.create(self.query_one("#kb-name", Input).value.strip(),
                    split_paths(self.query_one("#kb-paths", Input).value))

    def create(self, name: str, paths: list[str]) -> None:
        """Create a knowledge base of ``paths``, attach it, and index it."""
        if not name or not paths:
            self.lmdesk.notify(_("A knowledge base needs a name and at least one path."),
                               severity="warning")
            return
        missing = [p for p in paths if not Path(p).expanduser().exists()]
        if missing:
            self.lmdesk.notify(_("Not found: {join}", join=', '.join(missing)), severity="warning")
            return
        try:
            self.library.create(name, paths)
        except (KBError, OSError) as exc:
            self.lmdesk.notify(str(exc), title=_("Knowledge base"), severity="error")
            return
        self.query_one("#kb-name", Input).value = ""
        self.query_one("#kb-paths", Input).value = ""
        if self.conversation_id is not None and name not in self.attached:
            self.set_attached([*self.attached, name])
        self.query_one(DataTable).focus()
        self.start_index(name)

    def action_reindex(self) -> None:
        name = self._selected()
        if name is not None:
            self.start_index(name)

    def start_index(self, name: str) -> None:
        if self.indexing is not None:
            self.lmdesk.notify(_("Already indexing {indexing} (x cancels it).",
                                 indexing=self.indexing))
            return
        self.indexing = name
        self._cancel = threading.Event()
        bar = self.query_one(ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self._status(_("Indexing {name}: looking for files…", name=name))
        self._index(name, self._cancel)

    def action_cancel_index(self) -> None:
        if self.indexing is not None:
            self._cancel.set()
            self._status(f"Cancelling {self.indexing}…")

    @work(thread=True, exclusive=True, group="kb-index", exit_on_error=False)
    def _index(self, name: str, cancel: threading.Event) -> None:
        last = 0.0

        def progress(p: Progress) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S or p.files_done == p.files_total:
                last = now
                self.post_message(KBProgress(name, p))

        try:
            report = self.library.open(name).reindex(progress=progress, cancel=cancel)
        except Exception as exc:  # a bad file or folder must not take the app down
            self.post_message(KBIndexed(name, None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(KBIndexed(name, report))

    def on_kbprogress(self, event: KBProgress) -> None:
        event.stop()
        p = event.progress
        bar = self.query_one(ProgressBar)
        bar.update(total=max(p.files_total, 1), progress=p.files_done)
        self._status(
            _("Indexing {name}: {files_done}/{count}, {count2}, {eta}   (x cancels)",
              name=event.name, files_done=p.files_done, count=count(p.files_total, 'file'),
              count2=count(p.chunks, 'chunk'), eta=_eta(p.eta_s))
        )

    def on_kbindexed(self, event: KBIndexed) -> None:
        event.stop()
        self.indexing = None
        self.query_one(ProgressBar).display = False
        if event.report is None:
            self._status(_("Indexing {name} failed: {error}", name=event.name, error=event.error))
            self.lmdesk.notify(event.error, title=_("Indexing {name} failed", name=event.name),
                               severity="error")
        else:
            self.last_report = event.report
            found = len(event.report.problems)
            problems = f" ({count(found, 'problem')})" if found else ""
            self._status(f"{event.name}: {event.report.summary()}{problems}")
        self._list()

    def action_close(self) -> None:
        self._cancel.set()
        self.dismiss(None)


# -- the passage behind a source ---------------------------------------------------------------


def read_passage(path: str, start: int, end: int,
                 context: int = CONTEXT_LINES) -> tuple[int, list[str]]:
    """(first line number, lines) of ``path`` around ``start..end``; raises OSError."""
    first = max(1, start - context)
    last = max(end, start) + context
    out: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if number > last or len(out) >= MAX_PASSAGE_LINES:
                break
            if number >= first:
                out.append(line.rstrip("\n"))
    return first, out


def file_sha1(path: str) -> str:
    """The file's SHA-1, read in blocks; raises OSError."""
    import hashlib

    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class PassageRead(Message):
    def __init__(self, first: int, lines: list[str], error: str = "",
                 changed: bool = False) -> None:
        super().__init__()
        self.first = first
        self.lines = lines
        self.error = error
        self.changed = changed
        """The file is not the one indexed: its lines may have moved."""


class SourceScreen(ModalScreen[None]):
    """A cited passage: the file's lines around it, with the path and line numbers."""

    DEFAULT_CSS = (
        "SourceScreen {" + MODAL_CSS + """
        & > Vertical { width: 110; height: 90%; }
        #source-scroll { height: 1fr; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", N_("Close"), id="source.close"),
    ]

    def __init__(self, source: dict[str, Any]) -> None:
        super().__init__()
        self.source = source
        self.start = int(source.get("start", 1) or 1)
        self.end = int(source.get("end", self.start) or self.start)

    @property
    def path(self) -> str:
        path = Path(str(self.source["path"])).expanduser()
        return str(path if path.is_absolute() else Path.cwd() / path)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"[{self.source.get('n', '?')}] {source_label(self.source)}"
            with VerticalScroll(id="source-scroll"):
                yield Static(_("Reading…"), id="source-text", markup=False)
            yield Static(_("{path}   esc: close",
                           path=self.path), classes="modal-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#source-scroll").focus()
        self._read()

    @work(thread=True, exclusive=True, group="source-read", exit_on_error=False)
    def _read(self) -> None:
        if self.source.get("page"):
            self.post_message(PassageRead(1, [], "a PDF page: open the file to read it"))
            return
        try:
            first, lines = read_passage(self.path, self.start, self.end)
            indexed = str(self.source.get("sha1") or "")
            changed = bool(indexed) and file_sha1(self.path) != indexed
        except OSError as exc:
            self.post_message(PassageRead(1, [], str(exc)))
            return
        self.post_message(PassageRead(first, lines, changed=changed))

    def on_passage_read(self, event: PassageRead) -> None:
        event.stop()
        if event.error:
            text = _("Cannot show {path}: {error}", path=self.path, error=event.error)
        elif not event.lines:
            text = _("{path} has no line {start} now (the file changed?)",
                     path=self.path, start=self.start)
        else:
            width = len(str(event.first + len(event.lines)))
            rows = []
            for offset, line in enumerate(event.lines):
                number = event.first + offset
                mark = "▌" if self.start <= number <= self.end else " "
                rows.append(f"{number:>{width}} {mark} {line}")
            text = "\n".join(rows)
        if event.changed and not event.error:
            text = (_("⚠ {name} changed since it was indexed: these are its lines {start}-{end} "
                      "now, not necessarily the passage cited (reindex it with i in alt+k).\n\n",
                      name=Path(self.path).name, start=self.start, end=self.end) + text)
        self.query_one("#source-text", Static).update(text)

    @property
    def text(self) -> str:
        return str(self.query_one("#source-text", Static).content)

    def action_close(self) -> None:
        self.dismiss(None)
