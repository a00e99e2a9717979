"""What each model and profile has done on this machine: replies, mean tok/s, mean time to
first token. Recorded after every reply; the model switcher and the profiles screen show it.

Per-model rows live in the store's "profiles" table beside the profiles themselves (profile
rows carry ``"kind": "profile"`` and no ``"name"``, so the two never mix).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from tinydb import Query

from tui.engine.protocol import GenerationStats

if TYPE_CHECKING:
    from tui.session.choice import ResolvedModel
    from tui.store import Store

PROFILES_TABLE = "profiles"


def record_usage(store: Store, model: str, stats: GenerationStats) -> dict[str, Any]:
    """Count one more reply for ``model``: replies, mean generation tok/s, mean ttft."""
    table = store.table(PROFILES_TABLE)
    doc = table.get(Query().name == model)
    old: dict[str, Any] = dict(doc) if isinstance(doc, dict) else {"name": model}
    got = old.get("usage")
    usage: dict[str, Any] = dict(got) if isinstance(got, dict) else {}
    n = int(usage.get("replies", 0))
    mean_tps = float(usage.get("mean_tokens_per_s", 0.0))
    mean_ttft = float(usage.get("mean_ttft_s", 0.0))
    usage = {
        **usage,
        "replies": n + 1,
        "mean_tokens_per_s": (mean_tps * n + stats.generation_tokens_per_s) / (n + 1),
        "mean_ttft_s": (mean_ttft * n + stats.time_to_first_token_s) / (n + 1),
    }
    new = {**old, "name": model, "usage": usage}
    table.upsert(new, Query().name == model)
    return new


def record_reply(store: Store, model: ResolvedModel, stats: GenerationStats) -> None:
    """After a reply with tokens: the model's usage and its profile's (a profile deleted
    meanwhile is skipped)."""
    from tui.models.profiles import ProfileError, ProfileLibrary

    if stats.generated_tokens <= 0:
        return
    record_usage(store, model.name, stats)
    if model.profile is not None:
        with contextlib.suppress(ProfileError):
            ProfileLibrary(store).record_usage(model.profile.id, stats)


def usage_of(store: Store) -> dict[str, dict[str, Any]]:
    """Usage by model name (empty when the table cannot be read)."""
    try:
        rows = store.table(PROFILES_TABLE).all()
    except Exception:
        return {}
    return {str(r.get("name")): dict(r.get("usage") or {}) for r in rows if r.get("name")}
