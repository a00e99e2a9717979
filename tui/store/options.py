"""A conversation's options, typed: which model it runs on, its persona, memory, context
policy, knowledge bases, reasoning budget and tools.

Stored as one ``options`` object in the conversation's index row (and in its own file, so a
lost index can be rebuilt). Reading is forgiving: a value of the wrong type is dropped with a
problem line, never fatal, so a hand-edited or damaged file still opens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tui.i18n import _

ContextPolicy = Literal["drop_oldest", "summarize"]
CONTEXT_POLICIES: tuple[ContextPolicy, ...] = ("drop_oldest", "summarize")


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file on this machine."""

    path: str
    name: str


@dataclass(frozen=True)
class ProfileModel:
    """A saved model profile (a model with its parameters, maybe a LoRA adapter)."""

    profile_id: str
    name: str
    """What to call it while the profile cannot be read (its nickname when chosen)."""
    model_path: str = ""
    """The profile's model file when it was chosen: the fallback if the profile is deleted."""


@dataclass(frozen=True)
class EndpointModel:
    """A model on a remote OpenAI-compatible server (a saved endpoint)."""

    endpoint_id: str
    model: str
    endpoint_name: str = ""


ModelChoice = LocalModel | ProfileModel | EndpointModel


@dataclass(frozen=True)
class ConversationOptions:
    model: ModelChoice | None = None
    """The model this conversation runs on; None: whichever model is current."""
    persona: str | None = None
    """A persona id (``tui.prompting.personas``)."""
    memory: bool = True
    """Whether the user's memories are put into the prompt."""
    context_policy: ContextPolicy = "drop_oldest"
    """What happens to old turns when the window is full."""
    knowledge_bases: tuple[str, ...] = ()
    """Attached knowledge bases, by name."""
    reasoning_budget: int | None = None
    """Thinking tokens for reasoning models: None the model's default, -1 unlimited, 0 off."""
    tools: tuple[str, ...] = ()
    """Tools enabled for this conversation ("calc", "time", "mcp:NAME", ...)."""

    def replace(self, **changes: Any) -> ConversationOptions:
        return dataclasses.replace(self, **changes)


def model_to_doc(choice: ModelChoice | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, LocalModel):
        return {"kind": "local", "path": choice.path, "name": choice.name}
    if isinstance(choice, ProfileModel):
        return {"kind": "profile", "id": choice.profile_id, "name": choice.name,
                "model_path": choice.model_path}
    return {"kind": "endpoint", "id": choice.endpoint_id, "model": choice.model,
            "name": choice.endpoint_name}


def model_from_doc(doc: object) -> ModelChoice | None:
    """The model choice in ``doc``; None when it is missing or not understood."""
    if not isinstance(doc, Mapping):
        return None

    def text(key: str) -> str:
        value = doc.get(key)
        return value if isinstance(value, str) else ""

    kind = doc.get("kind")
    if kind == "local" and text("path"):
        return LocalModel(text("path"), text("name") or text("path"))
    if kind == "profile" and text("id"):
        return ProfileModel(text("id"), text("name"), text("model_path"))
    if kind == "endpoint" and text("id") and text("model"):
        return EndpointModel(text("id"), text("model"), text("name"))
    return None


def options_to_doc(options: ConversationOptions) -> dict[str, Any]:
    """What the store writes: only the fields that differ from the defaults."""
    doc: dict[str, Any] = {}
    defaults = ConversationOptions()
    for field in dataclasses.fields(ConversationOptions):
        value = getattr(options, field.name)
        if value == getattr(defaults, field.name):
            continue
        if field.name == "model":
            doc["model"] = model_to_doc(value)
        elif isinstance(value, tuple):
            doc[field.name] = list(value)
        else:
            doc[field.name] = value
    return doc


def options_from_doc(doc: object) -> tuple[ConversationOptions, list[str]]:
    """Options read from a stored document, and a line per value that had to be dropped."""
    if not isinstance(doc, Mapping):
        return ConversationOptions(), ([] if doc is None else [_("options are not an object")])
    problems: list[str] = []
    values: dict[str, Any] = {}
    if doc.get("model") is not None:
        model = model_from_doc(doc["model"])
        if model is None:
            problems.append(_("the model choice {model!r} is not understood", model=doc['model']))
        values["model"] = model
    persona = doc.get("persona")
    if isinstance(persona, str) and persona:
        values["persona"] = persona
    elif persona is not None:
        problems.append(_("persona {persona!r} is not a persona id", persona=persona))
    memory = doc.get("memory", True)
    if isinstance(memory, bool):
        values["memory"] = memory
    else:
        problems.append(_("memory should be true or false, got {memory!r}", memory=memory))
    policy = doc.get("context_policy", "drop_oldest")
    if policy in CONTEXT_POLICIES:
        values["context_policy"] = policy
    else:
        problems.append(_("unknown context policy {policy!r}", policy=policy))
    for key in ("knowledge_bases", "tools"):
        raw = doc.get(key, [])
        if isinstance(raw, list | tuple) and all(isinstance(x, str) for x in raw):
            values[key] = tuple(dict.fromkeys(raw))
        else:
            problems.append(_("{key} should be a list of names, got {raw!r}", key=key, raw=raw))
    budget = doc.get("reasoning_budget")
    if budget is None or (isinstance(budget, int) and not isinstance(budget, bool)
                          and budget >= -1):
        values["reasoning_budget"] = budget
    else:
        problems.append(_("reasoning_budget should be a whole number from -1, got {budget!r}",
                          budget=budget))
    return ConversationOptions(**values), problems


def options_from_legacy_extra(extra: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The 0.1 ``extra`` bag as an options document, and what it held that options do not."""
    doc: dict[str, Any] = {}
    rest = dict(extra)
    endpoint = rest.pop("endpoint", None)
    profile = rest.pop("profile", None)
    path = rest.pop("model_path", None)
    if isinstance(endpoint, Mapping) and endpoint.get("id") and endpoint.get("model"):
        doc["model"] = {"kind": "endpoint", "id": str(endpoint["id"]),
                        "model": str(endpoint["model"]), "name": str(endpoint.get("name") or "")}
    elif isinstance(profile, str) and profile:
        doc["model"] = {"kind": "profile", "id": profile, "name": "",
                        "model_path": path if isinstance(path, str) else ""}
    elif isinstance(path, str) and path:
        doc["model"] = {"kind": "local", "path": path, "name": ""}
    if "persona" in rest:
        doc["persona"] = rest.pop("persona")
    if "memory" in rest:
        doc["memory"] = rest.pop("memory")
    if "context_policy" in rest:
        doc["context_policy"] = rest.pop("context_policy")
    if "kbs" in rest:
        doc["knowledge_bases"] = rest.pop("kbs")
    return doc, rest
