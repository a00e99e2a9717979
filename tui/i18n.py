"""The one translation helper: every string a person reads goes through ``_`` or ``n_``.

English is the source language, the default and the fallback. The language is chosen once at
start-up by :func:`set_language` (from ``--lang``, the ``language`` setting or the locale, see
:func:`choose_language`); importing this module chooses nothing and reads no file.

- ``_("Loaded {name} in {seconds:.1f} s", name=..., seconds=...)``: named placeholders in
  ``str.format`` syntax, so a translation may put them in another order. Without values the
  text is returned as it is (braces and all).
- ``n_("{count} conversation", "{count} conversations", count)``: the plural form the
  language's rule picks for ``count``; ``count`` is a placeholder too.
- ``N_("...")`` marks a text defined at import time (a class attribute, a table) for the
  catalog; it returns it untranslated, and the code that shows it calls ``_`` on it then.

Catalogs are gettext ``.po`` files under ``tui/locale/<lang>/LC_MESSAGES/lmdesk.po``. A wheel
carries them compiled (``.mo``, by the build hook in ``hatch_build.py``); a checkout (an
editable install, a clean clone) compiles the ``.po`` in memory when its ``.mo`` is missing
or older, so no compiled binary is kept in the repository to drift from its source.
"""

from __future__ import annotations

import contextlib
import gettext
import io
import re
import string
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

DOMAIN = "lmdesk"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "es")
"""Languages with a catalog; English needs none."""

_LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")
"""Read in this order, as the C library does: the first one set decides."""


@dataclass(frozen=True)
class Language:
    code: str
    """``en`` or ``es``: which catalog."""
    locale: str
    """The locale for numbers and dates (``es_AR``, ``es_MX``, ``es``, ``en``)."""


ENGLISH = Language("en", "en")


@dataclass
class _Current:
    language: Language
    translations: gettext.NullTranslations


_current = _Current(ENGLISH, gettext.NullTranslations())
_speaking: ContextVar[_Current | None] = ContextVar("lmdesk_speaking", default=None)
"""A language for the current thread or task only (``speaking``), over the process's."""


def _now() -> _Current:
    return _speaking.get() or _current


def choose_language(flag: str | None, setting: str | None,
                    environ: Mapping[str, str]) -> Language:
    """``--lang`` first, then the ``language`` setting, then the locale's variables; a value
    starting with ``es`` (any region) is Spanish, anything else English."""
    for value in (flag, setting):
        if value:
            return _language_of(value)
    for name in _LOCALE_VARIABLES:
        value = environ.get(name, "")
        if value:
            return _language_of(value)
    return ENGLISH


def _language_of(value: str) -> Language:
    tag = value.split(".")[0].split("@")[0].replace("-", "_")
    if tag.lower().startswith("es"):
        region = tag[3:5].upper() if len(tag) >= 5 and tag[2] == "_" else ""
        return Language("es", f"es_{region}" if region.isalpha() and len(region) == 2
                        else "es")
    return ENGLISH


def set_language(language: Language | str) -> None:
    """Translate from now on into ``language`` (an unknown one means English)."""
    if isinstance(language, str):
        language = _language_of(language)
    if language.code not in LANGUAGES:
        language = ENGLISH
    _current.language = language
    _current.translations = (gettext.NullTranslations() if language.code == "en"
                             else catalog(language.code))


def current_language() -> Language:
    return _now().language


@contextlib.contextmanager
def speaking(language: Language | str) -> Iterator[None]:
    """Translate into ``language`` in this thread (or asyncio task) only, while the block
    runs: a server answering each request in the language it asked for."""
    if isinstance(language, str):
        language = _language_of(language)
    if language.code not in LANGUAGES:
        language = ENGLISH
    translations = (gettext.NullTranslations() if language.code == "en"
                    else catalog(language.code))
    token = _speaking.set(_Current(language, translations))
    try:
        yield
    finally:
        _speaking.reset(token)


def language_from_accept(header: str | None) -> Language:
    """The language an HTTP ``Accept-Language`` header prefers among those lmdesk speaks
    (``es-AR,es;q=0.9,en;q=0.8`` is Spanish); English when it names none of them."""
    best: tuple[float, int, Language] | None = None
    for position, item in enumerate((header or "").split(",")):
        tag, _sep, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        code = tag.strip().lower()[:2]
        if quality <= 0 or code not in LANGUAGES:
            continue
        candidate = (quality, -position, _language_of(tag.strip()))
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best is not None else ENGLISH


def _(message: str, /, **values: Any) -> str:
    """``message`` in the current language, its ``{placeholders}`` filled from ``values``."""
    text = _now().translations.gettext(message)
    return _fill(text, message, values)


def n_(singular: str, plural: str, count: int, /, **values: Any) -> str:
    """The plural form for ``count`` of ``singular``/``plural``, with ``{count}`` filled."""
    text = _now().translations.ngettext(singular, plural, count)
    values.setdefault("count", count)
    return _fill(text, singular if count == 1 else plural, values)


def N_(message: str, /) -> str:
    """Marks ``message`` for the catalog; translated later, where it is shown."""
    return message


def _fill(text: str, source: str, values: Mapping[str, Any]) -> str:
    if not values:
        return text
    english = _now().language.locale == "en"
    try:
        return text.format(**values) if english else _LOCAL_FORMAT.vformat(text, (), values)
    except (KeyError, IndexError, ValueError):
        # a translation naming a placeholder the code does not give: the English is right
        return source.format(**values)


_FIXED = re.compile(r"^(?P<align>[<>^]?)(?P<width>\d*)(?P<group>,?)\.(?P<digits>\d+)f$")
_GROUPED = re.compile(r"^(?P<align>[<>^]?)(?P<width>\d*),$")


class _LocaleFormatter(string.Formatter):
    """``{x:.1f}`` and ``{n:,}`` written with the locale's decimal and group separators
    (``3,1``, ``12.345``); every other field as ``str.format`` writes it."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(super().format_field(value, format_spec))
        fixed = _FIXED.match(format_spec)
        grouped = _GROUPED.match(format_spec)
        if fixed is None and grouped is None:
            return str(super().format_field(value, format_spec))
        from babel.numbers import format_decimal

        match = fixed or grouped
        assert match is not None
        digits = int(fixed["digits"]) if fixed else 0
        pattern = ("#,##0" if grouped or (fixed and fixed["group"]) else "0") + (
            "." + "0" * digits if digits else "")
        text = str(format_decimal(value, format=pattern, locale=_now().language.locale))
        align = match["align"] or ">"
        return format(text, f"{align}{match['width']}") if match["width"] else text


_LOCAL_FORMAT = _LocaleFormatter()


def format_number(value: float, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals in the current locale (``3.1``, ``3,1``); English
    keeps Python's own format (no grouping), as it always printed."""
    locale = _now().language.locale
    if locale == "en":
        return f"{value:.{digits}f}"
    from babel.numbers import format_decimal

    pattern = "0." + "0" * digits if digits > 0 else "0"
    return str(format_decimal(value, format=pattern, locale=locale))


def format_datetime(moment: datetime) -> str:
    """A local date and time, short: ``2026-12-01 23:24`` in English (as before), the
    locale's short form otherwise (``1/12/26, 23:24``)."""
    locale = _now().language.locale
    if locale == "en":
        return moment.strftime("%Y-%m-%d %H:%M")
    from babel.dates import format_datetime as babel_format

    return str(babel_format(moment, "short", locale=locale))


def format_date(moment: datetime) -> str:
    locale = _now().language.locale
    if locale == "en":
        return moment.strftime("%Y-%m-%d")
    from babel.dates import format_date as babel_format

    return str(babel_format(moment, "short", locale=locale))


def po_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def catalog(code: str) -> gettext.NullTranslations:
    """The translations for ``code``: its compiled ``.mo`` when it is as new as the ``.po``,
    else the ``.po`` compiled now, in memory; no catalog at all is English."""
    po = po_path(code)
    mo = po.with_suffix(".mo")
    try:
        po_time = po.stat().st_mtime
    except OSError:
        po_time = None
    try:
        if mo.stat().st_mtime >= (po_time or 0):
            return _load_mo(mo)
    except OSError:
        pass
    if po_time is None:
        return gettext.NullTranslations()
    return _compile_po(po, po_time)


@cache
def _load_mo(mo: Path) -> gettext.NullTranslations:
    with mo.open("rb") as handle:
        return gettext.GNUTranslations(handle)


@cache
def _compile_po(po: Path, _mtime: float) -> gettext.NullTranslations:
    return gettext.GNUTranslations(io.BytesIO(compile_po(po)))


def compile_po(po: Path) -> bytes:
    """``po`` compiled to ``.mo`` bytes (Babel); fuzzy entries left out, as msgfmt does."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as handle:
        parsed = read_po(handle)
    out = io.BytesIO()
    write_mo(out, parsed, use_fuzzy=False)
    return out.getvalue()


ARGPARSE_MESSAGES = (
    N_("usage: "), N_("options"), N_("positional arguments"),
    N_("show this help message and exit"), N_("show program's version number and exit"),
    N_("%(prog)s: error: %(message)s\n"), N_("argument %(argument_name)s: %(message)s"),
    N_("the following arguments are required: %s"), N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("invalid %(type)s value: %(value)r"), N_("expected one argument"),
    N_("expected at most one argument"), N_("expected at least one argument"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("not allowed with argument %s"), N_("one of the arguments %s is required"),
    N_("ignored explicit argument %r"), N_("can't open '%(filename)s': %(error)s"),
    N_("unknown parser %(parser_name)r (choices: %(choices)s)"),
)
"""argparse's own messages (headings, its errors), in the catalog like ours."""


def translate_argparse() -> None:
    """Make argparse's own messages (``usage:``, ``options``, its errors) follow the current
    language. argparse looks them up through its module's ``_``/``ngettext`` at the moment it
    writes them, so pointing those at this catalog is enough; called by ``main()``."""
    import argparse

    module: Any = argparse
    module._ = _argparse_gettext
    module.ngettext = _argparse_ngettext


def _argparse_gettext(message: str) -> str:
    return _now().translations.gettext(message)


def _argparse_ngettext(singular: str, plural: str, count: int) -> str:
    return _now().translations.ngettext(singular, plural, count)
