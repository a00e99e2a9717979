"""Settings and paths. Built once in ``main()`` and passed down; nothing happens at import.

Paths come from platformdirs, overridden by ``LMDESK_DATA_DIR`` / ``LMDESK_CONFIG_DIR`` and the
``--data-dir`` / ``--config-dir`` flags. User settings live in ``config.toml`` in the config
folder; a bad file is reported (the defaults are used) rather than fatal.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tui.i18n import _

APP_NAME = "lmdesk"


@dataclass(frozen=True)
class Paths:
    data_dir: Path
    """Conversations, templates, memory, model profiles (private: 0700)."""
    config_dir: Path
    """config.toml, user themes."""
    cache_dir: Path
    """Disposable caches (GGUF header cache)."""

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def themes_dir(self) -> Path:
        return self.config_dir / "themes"


def resolve_paths(data_dir: str | None = None, config_dir: str | None = None) -> Paths:
    import platformdirs

    data = data_dir or os.environ.get("LMDESK_DATA_DIR") or platformdirs.user_data_dir(APP_NAME)
    conf = (
        config_dir
        or os.environ.get("LMDESK_CONFIG_DIR")
        or platformdirs.user_config_dir(APP_NAME)
    )
    cache = os.environ.get("LMDESK_CACHE_DIR") or platformdirs.user_cache_dir(APP_NAME)
    return Paths(Path(data).expanduser(), Path(conf).expanduser(), Path(cache).expanduser())


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        path.chmod(0o700)
    return path


@dataclass
class Settings:
    """What a user may set in config.toml. Unknown keys are reported, not fatal."""

    model: str | None = None
    """Default model: a GGUF path or a name from `lmdesk models list`. Empty: the packaged one."""
    model_dirs: list[str] = field(default_factory=list)
    """Extra folders scanned for GGUF files."""
    n_ctx: int | None = None
    """Context window for loads; empty: the model's trained context capped at 8192."""
    n_threads: int | None = None
    """Generation threads; empty: physical cores."""
    n_gpu_layers: int | None = None
    """Layers on the GPU; empty: all when the llama.cpp build has a GPU backend."""
    flash_attention: bool = True
    """llama.cpp's flash attention, on by default as in llama.cpp's own tools: faster prompts
    and replies; on a CPU, off can generate faster a few thousand tokens into a conversation."""
    temperature: float = 0.7
    """Default sampling temperature."""
    max_tokens: int = 1024
    """Longest reply in tokens."""
    reasoning_budget: int = -1
    """Thinking tokens for reasoning models: -1 unlimited, 0 ask the model not to think."""
    prompt_lookup: bool = True
    """Draft from the conversation (prompt lookup): faster replies that copy from it (rewrites,
    edits, quotes), paused by itself for replies where the drafts miss."""
    system_prompt: str = "You are a helpful assistant."
    """System prompt for new conversations."""
    theme: str | None = None
    """Theme name; empty: the last one chosen in the app."""
    offline: bool = True
    """Refuse network use unless the user starts a download or uses a remote endpoint."""
    serve_port: int = 8765
    """Port on 127.0.0.1 for serving the loaded model while you chat (alt+a)."""
    tool_folders: list[str] = field(default_factory=list)
    """Folders the file tools (read_file, list_folder) may read; nothing outside them."""
    tools_always_allow: list[str] = field(default_factory=list)
    """Tools that run without asking first (e.g. ["calculator", "current_time"])."""
    mcp: dict[str, Any] = field(default_factory=dict)
    """MCP servers: ``[mcp.servers.NAME]`` with command/args/env, or url (see the README)."""
    keymap: dict[str, str] = field(default_factory=dict)
    """Binding id -> keys, e.g. {"new_conversation" = "ctrl+n"}."""
    reading_speed: float = 8.0
    """Tokens per second a model must reach to be called comfortable (green) here."""
    language: str | None = None
    """Interface language, "en" or "es"; empty: the locale's (LANG starting with es: Spanish)."""
    from_file: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)
    """The settings config.toml gave (the rest are defaults); not a setting itself."""


def load_settings(paths: Paths) -> tuple[Settings, list[str]]:
    """Read config.toml. Returns the settings and a list of problems to show the user."""
    problems: list[str] = []
    path = paths.config_file
    if not path.exists():
        return Settings(), problems
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return Settings(), [_("{path}: {exc}; using the defaults", path=path, exc=exc)]
    known = {f.name for f in fields(Settings)} - {"from_file"}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in known:
            values[key] = value
        else:
            problems.append(_("{path}: unknown setting {key!r} ignored", path=path, key=key))
    for key, value in list(values.items()):
        checked, problem = _check_value(key, value)
        if problem:
            problems.append(_("{path}: {key} {problem}, got {value!r}; ignored",
                              path=path, key=key, problem=problem, value=value))
            del values[key]
        else:
            values[key] = checked
    return Settings(**values, from_file=frozenset(values)), problems


_KINDS: dict[str, str] = {
    "model": "text", "model_dirs": "texts", "n_ctx": "count", "n_threads": "count",
    "n_gpu_layers": "integer", "flash_attention": "flag", "temperature": "number",
    "max_tokens": "count",
    "reasoning_budget": "integer", "prompt_lookup": "flag", "system_prompt": "text",
    "theme": "text", "offline": "flag", "serve_port": "port", "keymap": "keys",
    "reading_speed": "rate", "language": "language",
}
"""What each setting takes; checked, so ``model = 5`` is a line at start, not a traceback."""


def _check_value(key: str, value: Any) -> tuple[Any, str]:
    """(the value to use, "") or (None, what it should be)."""
    kind = _KINDS.get(key, "text")
    if kind == "flag":
        return (value, "") if isinstance(value, bool) else (None, _("should be true or false"))
    if kind == "text":
        return (value, "") if isinstance(value, str) else (None, _("should be text in quotes"))
    if kind == "language":
        ok = isinstance(value, str) and value.lower() in ("en", "es")
        return (value.lower(), "") if ok else (None, _('should be "en" or "es"'))
    if kind == "texts":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return (value, "") if ok else (None, _('should be a list of folders, like ["~/models"]'))
    if kind == "keys":
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        return (value, "") if ok else (None, _('should be a table of binding = "keys"'))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, _("should be a number")
    if kind == "rate":  # a positive number of tokens per second
        ok = value == value and 0 < value < float("inf")
        return (float(value), "") if ok else (None, _("should be a number above 0"))
    if kind == "number":  # a TOML integer (temperature = 1) is a number too
        return (float(value), "") if value == value and abs(value) != float("inf") else (
            None, _("should be a number"))
    if not isinstance(value, int):
        return None, _("should be a whole number")
    if kind == "count" and value < 1:
        return None, _("should be 1 or more")
    if kind == "port" and not 1 <= value <= 65535:
        return None, _("should be a port from 1 to 65535")
    return value, ""
