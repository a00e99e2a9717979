"""Personas: a system prompt, a tone, a sampling preset and example pairs, chosen per chat.

The example pairs (instruction -> reference response) are sent as few-shot turns, and can be
exported as JSONL in the chat format fine-tuning tools read, so a persona can grow into a
fine-tuned model.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.engine.errors import InvalidParameter
from tui.engine.protocol import ChatMessage, SamplingParams
from tui.i18n import _, current_language
from tui.prompting.templates import PromptingError

if TYPE_CHECKING:
    from tui.store import ConversationMeta, Store

TABLE = "personas"

TONES: dict[str, str] = {
    "neutral": "",
    "technical": "Use precise technical language, exact terms and concrete details.",
    "creative": "Be imaginative and vivid; offer unexpected ideas.",
    "formal": "Write in a formal, courteous register.",
    "informal": "Write in a relaxed, conversational register.",
    "friendly": "Be warm and encouraging.",
    "concise": "Be brief: short sentences, no filler.",
    "didactic": "Explain step by step, with examples, checking understanding as you go.",
}
SAMPLING_KEYS = frozenset(
    {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "seed"}
)
TONES_ES: dict[str, str] = {
    "neutral": "",
    "technical": "Usa un lenguaje técnico preciso, términos exactos y detalles concretos.",
    "creative": "Sé imaginativo y vívido; ofrece ideas inesperadas.",
    "formal": "Escribe en un registro formal y cortés.",
    "informal": "Escribe en un registro relajado y conversacional.",
    "friendly": "Sé cálido y alentador.",
    "concise": "Sé breve: oraciones cortas, sin relleno.",
    "didactic": "Explica paso a paso, con ejemplos, comprobando que se entiende sobre la marcha.",
}
"""The same tones, said to the model in Spanish when lmdesk speaks Spanish."""
_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")


class PersonaError(PromptingError, ValueError):
    pass


class PersonaNotFound(PromptingError, LookupError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else _("persona not found")


@dataclass(frozen=True)
class Example:
    """An instruction and the reference response the persona should give."""

    instruction: str
    response: str


@dataclass(frozen=True)
class Persona:
    id: str
    name: str
    system_prompt: str = ""
    tone: str = "neutral"
    """One of ``TONES`` or any short description ("playful but precise")."""
    sampling: Mapping[str, float | int] = dataclasses.field(default_factory=dict)
    """Applied over the app's ``SamplingParams`` (only the keys given)."""
    examples: tuple[Example, ...] = ()
    description: str = ""
    builtin: bool = False
    created: float = 0.0
    updated: float = 0.0

    def tone_instruction(self) -> str:
        tone = self.tone.strip()
        spanish = current_language().code == "es"
        tones = TONES_ES if spanish else TONES
        if tone.lower() in tones:
            return tones[tone.lower()]
        if not tone:
            return ""
        return f"Tono: {tone}." if spanish else f"Tone: {tone}."

    def system_block(self) -> str:
        """The persona's part of the system message: always the same text for the same
        persona (the prompt prefix must not change between turns)."""
        return "\n\n".join(p for p in (self.system_prompt.strip(), self.tone_instruction()) if p)

    def apply_sampling(self, base: SamplingParams) -> SamplingParams:
        return apply_sampling(base, self.sampling)

    def validate(self) -> None:
        if not isinstance(self.id, str) or not _SLUG.match(self.id):
            raise PersonaError(_("bad persona id {id!r}: use lowercase letters, digits and '-', "
                                 "like 'technical-writer'", id=self.id))
        if not self.name.strip():
            raise PersonaError(_("persona {id!r} needs a name", id=self.id))
        apply_sampling(SamplingParams(), self.sampling)
        for ex in self.examples:
            if not ex.instruction.strip() or not ex.response.strip():
                raise PersonaError(_("persona {id!r}: an example has an empty instruction or "
                                     "response", id=self.id))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "description": self.description,
            "system_prompt": self.system_prompt, "tone": self.tone,
            "sampling": dict(self.sampling),
            "examples": [{"instruction": e.instruction, "response": e.response}
                         for e in self.examples],
            "created": self.created, "updated": self.updated,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, builtin: bool = False) -> Persona:
        try:
            examples = tuple(Example(str(e["instruction"]), str(e["response"]))
                             for e in data.get("examples", ()))
            persona = cls(
                id=str(data["id"]), name=str(data.get("name", data["id"])),
                system_prompt=str(data.get("system_prompt", "")),
                tone=str(data.get("tone", "neutral")), sampling=dict(data.get("sampling", {})),
                examples=examples, description=str(data.get("description", "")),
                builtin=builtin, created=float(data.get("created", 0.0)),
                updated=float(data.get("updated", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PersonaError(_("a persona record is malformed ({exc!r})", exc=exc)) from None
        persona.validate()
        return persona


def apply_sampling(base: SamplingParams, preset: Mapping[str, Any]) -> SamplingParams:
    """``base`` with the preset's values; unknown keys or bad values are a ``PersonaError``."""
    unknown = sorted(set(preset) - SAMPLING_KEYS)
    if unknown:
        raise PersonaError(_("unknown sampling setting {value!r} (known: {join})",
                             value=unknown[0], join=', '.join(sorted(SAMPLING_KEYS))))
    params = replace(base, **dict(preset))
    try:
        params.validate()
    except InvalidParameter as exc:
        raise PersonaError(_("bad sampling preset: {exc}", exc=exc)) from None
    return params


def examples_as_messages(examples: Iterable[Example]) -> tuple[ChatMessage, ...]:
    """Few-shot turns: each example as a user message and the assistant's reference reply."""
    out: list[ChatMessage] = []
    for ex in examples:
        out += [ChatMessage("user", ex.instruction), ChatMessage("assistant", ex.response)]
    return tuple(out)


def examples_jsonl(persona: Persona, *, include_system: bool = True) -> str:
    """One JSON object per example: ``{"messages": [system?, user, assistant]}``, the chat
    format fine-tuning tools (OpenAI, Axolotl, TRL, Unsloth...) accept."""
    system = persona.system_block() if include_system else ""
    lines = []
    for ex in persona.examples:
        msgs = [{"role": "system", "content": system}] if system else []
        msgs += [{"role": "user", "content": ex.instruction},
                 {"role": "assistant", "content": ex.response}]
        lines.append(json.dumps({"messages": msgs}, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def export_examples(persona: Persona, path: Path | str, *, include_system: bool = True) -> int:
    """Write ``examples_jsonl`` to ``path``; returns the number of examples written."""
    Path(path).write_text(examples_jsonl(persona, include_system=include_system),
                          encoding="utf-8")
    return len(persona.examples)


def _builtin(id: str, name: str, prompt: str, tone: str, sampling: dict[str, float],
             examples: Sequence[tuple[str, str]] = (), description: str = "") -> Persona:
    return Persona(id=id, name=name, system_prompt=prompt, tone=tone, sampling=sampling,
                   examples=tuple(Example(i, r) for i, r in examples),
                   description=description, builtin=True)


BUILTIN_PERSONAS: tuple[Persona, ...] = (
    _builtin("assistant", "Assistant", "You are a helpful, honest assistant.", "neutral", {},
             description="A general assistant with the app's sampling settings."),
    _builtin("technical", "Technical expert",
             "You are a senior engineer. Answer accurately, show your reasoning briefly, and "
             "say when you are not sure.", "technical",
             {"temperature": 0.3, "top_p": 0.9},
             [("What does idempotent mean for an HTTP method?",
               "Calling it once or several times leaves the server in the same state. GET, "
               "PUT and DELETE are idempotent; POST is not.")],
             "Precise and low-temperature, for technical questions."),
    _builtin("coder", "Coding assistant",
             "You are a programming assistant. Prefer short, working code with a one-line "
             "explanation; point out bugs and edge cases.", "concise",
             {"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.05},
             [("Reverse a list in Python without changing the original.",
               "`reversed_items = items[::-1]` makes a reversed copy; `items` is unchanged.")],
             "Code first, little prose."),
    _builtin("creative", "Creative writer",
             "You are an imaginative writer who helps with stories, characters and ideas.",
             "creative", {"temperature": 1.0, "top_p": 0.98, "min_p": 0.02},
             description="High temperature for brainstorming and fiction."),
    _builtin("formal", "Formal correspondent",
             "You write professional correspondence and documents.", "formal",
             {"temperature": 0.5}, description="Letters, reports, official replies."),
    _builtin("friendly", "Friendly helper", "You are a friendly helper.", "informal",
             {"temperature": 0.8}, description="Casual and warm."),
    _builtin("teacher", "Teacher",
             "You are a patient teacher. Adapt explanations to the student's level and use "
             "everyday examples.", "didactic", {"temperature": 0.5},
             [("What is photosynthesis?",
               "It is how plants make their food: they use sunlight to turn water and carbon "
               "dioxide into sugar, and release oxygen. Think of a leaf as a tiny solar-powered "
               "kitchen. Can you name what goes in and what comes out?")],
             "Explanations with examples and questions."),
    _builtin("asistente-es", "Asistente (español)",
             "Eres un asistente útil y honesto. Responde siempre en español.", "neutral", {},
             description="Un asistente general que responde en español."),
)
"""The shipped personas, in English."""

def _spanish(id: str, name: str, prompt: str, examples: Sequence[tuple[str, str]] = (),
             description: str = "") -> Persona:
    """The English persona ``id`` in Spanish: its tone and sampling stay the same."""
    english = next(p for p in BUILTIN_PERSONAS if p.id == id)
    return replace(english, name=name, system_prompt=prompt,
                   examples=tuple(Example(i, r) for i, r in examples),
                   description=description)


BUILTIN_PERSONAS_ES: tuple[Persona, ...] = (
    _spanish("assistant", "Asistente", "Eres un asistente útil y honesto.",
             description="Un asistente general con los ajustes de muestreo de la aplicación."),
    _spanish("technical", "Experto técnico",
             "Eres un ingeniero sénior. Responde con exactitud, muestra brevemente tu "
             "razonamiento y di cuándo no estás seguro.",
             [("¿Qué significa que un método HTTP sea idempotente?",
               "Que llamarlo una o varias veces deja el servidor en el mismo estado. GET, PUT y "
               "DELETE son idempotentes; POST no.")],
             "Preciso y con temperatura baja, para preguntas técnicas."),
    _spanish("coder", "Asistente de programación",
             "Eres un asistente de programación. Prefiere código corto que funcione, con una "
             "explicación de una línea; señala errores y casos límite.",
             [("Invierte una lista en Python sin cambiar la original.",
               "`invertida = items[::-1]` crea una copia invertida; `items` no cambia.")],
             "Primero el código, poca prosa."),
    _spanish("creative", "Escritor creativo",
             "Eres un escritor imaginativo que ayuda con historias, personajes e ideas.",
             description="Temperatura alta para lluvias de ideas y ficción."),
    _spanish("formal", "Corresponsal formal",
             "Redactas correspondencia y documentos profesionales.",
             description="Cartas, informes, respuestas oficiales."),
    _spanish("friendly", "Ayudante cercano", "Eres un ayudante cercano y amable.",
             description="Informal y cálido."),
    _spanish("teacher", "Docente",
             "Eres un docente paciente. Adapta las explicaciones al nivel del estudiante y usa "
             "ejemplos cotidianos.",
             [("¿Qué es la fotosíntesis?",
               "Es la forma en que las plantas fabrican su alimento: usan la luz del sol para "
               "convertir agua y dióxido de carbono en azúcar, y liberan oxígeno. Piensa en una "
               "hoja como una pequeña cocina que funciona con energía solar. ¿Puedes decir qué "
               "entra y qué sale?")],
             "Explicaciones con ejemplos y preguntas."),
    BUILTIN_PERSONAS[-1],
)
"""The same personas (same ids), in Spanish: a conversation's persona follows the language."""


def builtin_personas() -> tuple[Persona, ...]:
    """The shipped personas in the current language."""
    return BUILTIN_PERSONAS_ES if current_language().code == "es" else BUILTIN_PERSONAS


class PersonaLibrary:
    """Built-in personas (read-only) and the user's, in the store's "personas" table."""

    def __init__(self, store: Store, builtins: Sequence[Persona] | None = None) -> None:
        self._store = store
        self._builtins = {p.id: p for p in (builtin_personas() if builtins is None
                                             else builtins)}

    def _user(self) -> dict[str, Persona]:
        out: dict[str, Persona] = {}
        for doc in self._store.table(TABLE).all():
            try:
                persona = Persona.from_dict(doc)
            except PersonaError:
                continue
            out[persona.id] = persona
        return out

    def list_personas(self) -> list[Persona]:
        """Built-ins first (in their order), then the user's by name."""
        user = sorted(self._user().values(), key=lambda p: p.name.lower())
        return [*self._builtins.values(), *user]

    def get(self, persona_id: str) -> Persona:
        found = self._builtins.get(persona_id) or self._user().get(persona_id)
        if found is None:
            raise PersonaNotFound(_("no persona {persona_id!r}", persona_id=persona_id))
        return found

    def exists(self, persona_id: str) -> bool:
        return persona_id in self._builtins or persona_id in self._user()

    def create(self, persona: Persona) -> Persona:
        if self.exists(persona.id):
            raise PersonaError(_("a persona {id!r} already exists", id=persona.id))
        now = time.time()
        persona = replace(persona, builtin=False, created=now, updated=now)
        persona.validate()
        self._write(persona)
        return persona

    def update(self, persona_id: str, /, **changes: Any) -> Persona:
        old = self._writable(persona_id)
        if "id" in changes and changes["id"] != persona_id:
            raise PersonaError(_("a persona's id cannot change: duplicate it instead"))
        if "examples" in changes:
            changes["examples"] = tuple(
                e if isinstance(e, Example) else Example(*e) for e in changes["examples"])
        try:
            new = replace(old, **changes, updated=time.time())
        except TypeError as exc:
            raise PersonaError(_("cannot change persona {persona_id!r}: {exc}",
                                 persona_id=persona_id, exc=exc)) from None
        new.validate()
        self._write(new)
        return new

    def duplicate(self, persona_id: str, new_id: str | None = None,
                  name: str | None = None) -> Persona:
        source = self.get(persona_id)
        if new_id is None:
            new_id, n = f"{persona_id}-copy", 2
            while self.exists(new_id):
                new_id, n = f"{persona_id}-copy-{n}", n + 1
        return self.create(replace(source, id=new_id, name=name or f"{source.name} (copy)"))

    def delete(self, persona_id: str) -> None:
        self._writable(persona_id)
        self._store.table(TABLE).remove(_by_id(persona_id))

    def add_example(self, persona_id: str, instruction: str, response: str) -> Persona:
        old = self.get(persona_id)
        return self.update(persona_id, examples=(*old.examples, Example(instruction, response)))

    def for_conversation(self, meta: ConversationMeta) -> Persona | None:
        """The conversation's persona; ``None`` when none is set or it was deleted."""
        persona_id = meta.options.persona
        if persona_id is None:
            return None
        try:
            return self.get(persona_id)
        except PersonaNotFound:
            return None

    def _writable(self, persona_id: str) -> Persona:
        persona = self.get(persona_id)
        if persona.builtin:
            raise PersonaError(_("{persona_id!r} is built in and cannot be changed: duplicate it",
                                 persona_id=persona_id))
        return persona

    def _write(self, persona: Persona) -> None:
        self._store.table(TABLE).upsert(persona.to_dict(), _by_id(persona.id))


def _by_id(persona_id: str) -> Any:
    from tinydb import where

    return where("id") == persona_id


def set_conversation_persona(store: Store, cid: str, persona_id: str | None) -> ConversationMeta:
    return store.update_options(cid, persona=persona_id)
