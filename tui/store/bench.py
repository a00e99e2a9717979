"""``lmdesk bench store``: does an append cost the same with 10 or 1,000 conversations?

Data sets are built in a temp folder by writing the files directly through the store's
storage (not one append at a time), then the real ``Store`` appends messages and loads a long
conversation. Latencies include the fsyncs, so they depend on the disk.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui.config import ensure_private_dir

from . import schema
from .conversation_file import META_DOC, META_TABLE, MSG_TABLE
from .errors import StoreError
from .models import StoredMessage, message_to_doc, new_id
from .storage import AtomicJSONStorage, signature
from .store import CONV_DIR, CONV_TABLE, INDEX_NAME, Store

_PROSE = (
    "the model answers with a short paragraph about local inference, quantisation, "
    "context windows and the cost of prompt evaluation on a laptop cpu"
)
_WORDS = _PROSE.split(" ")


def _text(n: int) -> str:
    """Deterministic prose of about 40 to 400 characters."""
    count = 8 + (n * 37) % 60
    return " ".join(_WORDS[(n + i) % len(_WORDS)] for i in range(count))


def build_data_set(data_dir: Path, conversations: int, messages: int) -> list[str]:
    """Write ``conversations`` conversations of ``messages`` messages and their index.

    Returns the conversation ids, oldest first. Not durable until the final ``os.sync``.
    """
    ensure_private_dir(data_dir)
    ensure_private_dir(data_dir / CONV_DIR)
    now = time.time() - 86_400
    rows: dict[str, dict[str, Any]] = {}
    ids: list[str] = []
    for c in range(conversations):
        cid = new_id("c")
        created = now + c
        docs = {
            str(m + 1): message_to_doc(StoredMessage(
                id=f"m{c:05d}{m:05d}", role="user" if m % 2 == 0 else "assistant",
                content=_text(c + m), created=created + m / 1000,
                model=None if m % 2 == 0 else "bench-model",
                parent=f"m{c:05d}{m - 1:05d}" if m else None,
            ))
            for m in range(messages)
        }
        meta = {
            "id": cid, "title": f"Bench conversation {c}", "created": created,
            "updated": created + messages / 1000, "pinned": False, "system_prompt": "",
            "model": "bench-model", "options": {}, "shown": None,
        }
        storage = AtomicJSONStorage(data_dir / CONV_DIR / f"{cid}.json", durable=False)
        storage.write_raw({META_TABLE: {META_DOC: meta}, MSG_TABLE: docs})
        sig = storage.cached_signature
        row = {key: value for key, value in meta.items() if key != "shown"}
        rows[str(c + 1)] = {**row, "message_count": messages, "sig": list(sig) if sig else None}
        ids.append(cid)
    index: schema.Index = {CONV_TABLE: rows}
    schema.set_version(index, schema.current_version())
    AtomicJSONStorage(data_dir / INDEX_NAME, durable=False).write_raw(index)
    os.sync()
    return ids


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _time_appends(data_dir: Path, cid: str, appends: int) -> list[float]:
    with Store.open(data_dir) as store:
        for i in range(3):  # warm up: first parse of the file, page cache
            store.append_message(cid, "user", _text(i))
        times: list[float] = []
        for i in range(appends):
            role = "user" if i % 2 == 0 else "assistant"
            start = time.perf_counter()
            store.append_message(cid, role, _text(i), model="bench-model")
            times.append((time.perf_counter() - start) * 1000)
    return times


def run_store_bench(
    out: Callable[[str], None] = print,
    *,
    sizes: tuple[int, int] = (10, 1000),
    messages: int = 50,
    appends: int = 60,
    long_conversation: int = 2000,
    base_dir: Path | None = None,
) -> dict[str, float]:
    """Print and return append latency (ms, median and p95) at each size, their ratio, and the
    time to load a conversation of ``long_conversation`` messages."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lmdesk-bench-", dir=base_dir) as tmp:
        root = Path(tmp)
        out(f"store bench in {root} ({messages} messages per conversation, {appends} appends)")
        for n in sizes:
            data_dir = root / f"n{n}"
            start = time.perf_counter()
            ids = build_data_set(data_dir, n, messages)
            built = time.perf_counter() - start
            start = time.perf_counter()
            with Store.open(data_dir) as store:
                opened = (time.perf_counter() - start) * 1000
                start = time.perf_counter()
                listed = store.list_conversations()
                list_ms = (time.perf_counter() - start) * 1000
                if len(listed) != n:
                    raise StoreError(f"bench: expected {n} conversations, listed {len(listed)}")
            times = _time_appends(data_dir, ids[-1], appends)
            med, p95 = statistics.median(times), _p95(times)
            results[f"append_median_ms_{n}"] = med
            results[f"append_p95_ms_{n}"] = p95
            results[f"open_ms_{n}"] = opened
            results[f"list_ms_{n}"] = list_ms
            out(
                f"{n:>6} conversations: append median {med:6.2f} ms  p95 {p95:6.2f} ms  "
                f"(open {opened:.1f} ms, list {list_ms:.1f} ms, built in {built:.1f} s)"
            )
        small, large = sizes
        ratio = results[f"append_median_ms_{large}"] / max(results[f"append_median_ms_{small}"],
                                                           1e-9)
        results["append_ratio"] = ratio
        out(f"append median ratio {large} vs {small} conversations: {ratio:.2f}")
        results[f"rebuild_ms_{large}"] = _time_rebuild(root / f"n{large}", large, out)

        data_dir = root / "long"
        (cid,) = build_data_set(data_dir, 1, long_conversation)
        with Store.open(data_dir) as store:
            start = time.perf_counter()
            loaded = store.messages(cid)
            cold = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            store.messages(cid)
            warm = (time.perf_counter() - start) * 1000
            size_kib = signature(os.stat(data_dir / CONV_DIR / f"{cid}.json"))[1] / 1024
            times = _time_appends_open(store, cid, min(appends, 20))
        if len(loaded) != long_conversation:
            raise StoreError(f"bench: loaded {len(loaded)} of {long_conversation} messages")
        results[f"load_ms_{long_conversation}"] = cold
        results[f"load_warm_ms_{long_conversation}"] = warm
        results[f"append_median_ms_long_{long_conversation}"] = statistics.median(times)
        out(
            f"load a conversation of {long_conversation} messages ({size_kib:.0f} KiB): "
            f"{cold:.1f} ms (again, cached: {warm:.1f} ms); append to it: median "
            f"{statistics.median(times):.2f} ms"
        )
    return results


def _time_rebuild(data_dir: Path, expected: int, out: Callable[[str], None]) -> float:
    """Lose the index (and its backup) and time the open that lists every conversation again
    from the files."""
    for name in (INDEX_NAME, f"{INDEX_NAME}.bak"):
        (data_dir / name).unlink(missing_ok=True)
    start = time.perf_counter()
    with Store.open(data_dir) as store:
        elapsed = (time.perf_counter() - start) * 1000
        listed = store.list_conversations()
    if len(listed) != expected:
        raise StoreError(f"bench: rebuilt {len(listed)} of {expected} conversations")
    out(f"rebuild a lost index from {expected} conversation files: {elapsed:.0f} ms")
    return elapsed


def _time_appends_open(store: Store, cid: str, appends: int) -> list[float]:
    times: list[float] = []
    for i in range(appends):
        start = time.perf_counter()
        store.append_message(cid, "user", _text(i))
        times.append((time.perf_counter() - start) * 1000)
    return times
