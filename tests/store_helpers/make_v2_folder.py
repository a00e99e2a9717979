"""Write the data folder kept in ``tests/store_fixtures/v2`` with the code of lmdesk 117ec4b
(schema 2: messages without parents, named tables inside the index).

Run against a checkout of that version, not this one::

    git archive 117ec4b tui | tar -x -C /tmp/v2 && \
        PYTHONPATH=/tmp/v2 python tests/store_helpers/make_v2_folder.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

from tui.models.profiles import ProfileLibrary
from tui.prompting.memory import MemoryStore
from tui.prompting.personas import Persona, PersonaLibrary
from tui.prompting.templates import TemplateLibrary
from tui.store import ConversationOptions, ReasoningPart, Store, TextPart, schema


def main(out: Path) -> None:
    assert schema.current_version() == 2, "run this with the 117ec4b code"
    with Store.open(out) as store:
        trip = store.create_conversation("Trip to Lisbon", system_prompt="Be brief.",
                                         model="smollm2-135m")
        store.update_options(trip.id, persona="guide", memory=False)
        store.update_conversation(trip.id, pinned=True)
        store.append_message(trip.id, "user", "Plan three days in Lisbon")
        store.append_message(
            trip.id, "assistant", "Day 1: Alfama. Day 2: Belém. Day 3: Sintra.",
            model="smollm2-135m", stats={"generated_tokens": 17, "stop_reason": "stop"},
            parts=(ReasoningPart("three days, three areas", 5, 0.4),
                   TextPart("Day 1: Alfama. Day 2: Belém. Day 3: Sintra.")))
        store.append_message(trip.id, "user", "And where to eat?")
        store.append_message(trip.id, "assistant", "Try a tasca in", model="smollm2-135m",
                             status="stopped")
        empty = store.create_conversation("Nothing yet")
        code = store.create_conversation("Reverse a string",
                                         options=ConversationOptions(tools=("calc",)))
        store.append_message(code.id, "user", "Reverse a string in Python")
        store.append_message(code.id, "assistant", "`s[::-1]`", model="smollm2-135m")
        MemoryStore(store).add("I live in Porto", important=True)
        MemoryStore(store).add("I prefer metric units")
        TemplateLibrary(store).create("standup", "Summarise: {{ notes }}", title="Stand-up")
        PersonaLibrary(store).create(Persona(id="guide", name="Tour guide",
                                             system_prompt="You are a local guide."))
        ProfileLibrary(store).create("terse", "/models/smollm2.gguf", n_ctx=2048,
                                     sampling={"temperature": 0.2})
        store.set_setting("theme", "nord")
        store.set_setting("welcome_shown", True)
        print(trip.id, empty.id, code.id)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
