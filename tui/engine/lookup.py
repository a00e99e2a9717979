"""Prompt lookup: draft tokens for speculative decoding taken from the context itself.

A reply that copies from its context (a rewrite, an edit, a summary quoting its source)
repeats runs of tokens the context already holds. The proposer finds the tokens that
followed the latest match of the reply's last few tokens (an n-gram, longest first, the
candidate whose match reaches furthest back among the recent ones) and offers what came
after as a draft; once a draft is accepted it keeps following the same place, so a long
copy is drafted without a search per token. The loop verifies a draft in one batch, so
a wrong draft costs time, never a different output.

Pure Python over token ids, updated incrementally (a few dictionary operations a token),
so it is tested without a model. ``AcceptanceGate`` is the policy that pauses lookup in a
reply whose drafts are mostly rejected, for longer each time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

MAX_NGRAM = 3
MIN_NGRAM = 1
MAX_DRAFT = 10
CANDIDATES = 8
"""Recent occurrences of the longest n-gram compared by how far back they match."""
REACH = 32
"""How many tokens back a candidate's match is measured (enough to tell lines apart)."""


class PromptLookup:
    """Drafts from the token history (prompt, then each accepted token, in order)."""

    def __init__(self, tokens: Iterable[int] = (), *, max_ngram: int = MAX_NGRAM,
                 min_ngram: int = MIN_NGRAM, max_draft: int = MAX_DRAFT) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.max_draft = max_draft
        self.tokens: list[int] = []
        self._latest: dict[tuple[int, ...], int] = {}
        """n-gram (shorter than the longest) -> where the token after its latest
        occurrence is."""
        self._longest: dict[tuple[int, ...], list[int]] = {}
        """longest n-gram -> where the token after each occurrence is, oldest first."""
        self._follow: int | None = None
        """Where the next token is expected in the history, while a copy goes on."""
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.push(token)

    def push(self, token: int) -> None:
        """Add the next token of the history."""
        hist = self.tokens
        at = len(hist)
        follow = self._follow
        if follow is not None:
            self._follow = follow + 1 if hist[follow] == token else None
        # the n-grams ending at the previous token now have a follower: this one, at ``at``
        top = self.max_ngram
        if at >= top:
            key = tuple(hist[at - top:at])
            seen = self._longest.get(key)
            if seen is None:
                self._longest[key] = [at]
            else:
                seen.append(at)
        for n in range(self.min_ngram, min(top - 1, at) + 1):
            self._latest[tuple(hist[at - n:at])] = at
        hist.append(token)

    def propose(self, limit: int | None = None) -> list[int]:
        """Up to ``limit`` (default ``max_draft``) tokens likely to come next; [] when the
        history's tail matches nothing earlier."""
        want = self.max_draft if limit is None else min(limit, self.max_draft)
        if want <= 0:
            return []
        hist = self.tokens
        start = self._follow
        if start is None:
            start = self._find()
            if start is None:
                return []
            self._follow = start
        return hist[start:start + want]

    def _find(self) -> int | None:
        hist = self.tokens
        end = len(hist)
        top = self.max_ngram
        if end >= top:
            seen = self._longest.get(tuple(hist[end - top:]))
            if seen:
                return self._best(seen[-CANDIDATES:])
        for n in range(min(top - 1, end), self.min_ngram - 1, -1):
            found = self._latest.get(tuple(hist[end - n:]))
            if found is not None:
                return found
        return None

    def _best(self, candidates: list[int]) -> int:
        """Of the followers of the tail's n-gram, the one whose match reaches furthest back
        (the most recent among equals)."""
        hist = self.tokens
        end = len(hist)
        best, best_len = candidates[-1], -1
        for follower in reversed(candidates):
            n = self.max_ngram
            while (n < REACH and follower - n - 1 >= 0
                   and hist[follower - n - 1] == hist[end - n - 1]):
                n += 1
            if n > best_len:
                best, best_len = follower, n
        return best


class AcceptanceGate:
    """When one reply drafts, and how long. Drafting pauses when fewer than ``threshold`` of
    the drafted tokens were accepted over the last ``window`` drafts, for ``pause`` tokens at
    first and twice as long each time after, up to ``MAX_PAUSE`` (a reply that never copies
    soon drafts almost never; one that starts copying after a preamble still gets its
    drafts). A draft is as long as the last one that was all accepted, doubled, up to
    ``MAX_DRAFT``; after a miss, one longer than what was accepted."""

    MAX_PAUSE = 512

    def __init__(self, *, window: int = 8, threshold: float = 0.3, pause: int = 32,
                 max_draft: int = MAX_DRAFT, first_draft: int = 4) -> None:
        self.window = window
        self.threshold = threshold
        self.pause = pause
        self.max_draft = max_draft
        self.length = min(first_draft, max_draft)
        self.drafted = 0
        self.accepted = 0
        self.paused_for = 0
        self.pauses = 0
        self._recent: deque[tuple[int, int]] = deque(maxlen=window)

    @property
    def open(self) -> bool:
        return self.paused_for == 0

    def tick(self) -> None:
        """One token generated without a draft."""
        if self.paused_for:
            self.paused_for -= 1

    def record(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        if accepted == drafted:
            self.length = min(max(self.length, drafted) * 2, self.max_draft)
        else:
            self.length = max(min(accepted + 1, self.max_draft), 1)
        recent = self._recent
        recent.append((drafted, accepted))
        if len(recent) == self.window:
            tried = sum(d for d, _ in recent)
            if tried and sum(a for _, a in recent) < self.threshold * tried:
                self.paused_for = min(self.pause << self.pauses, self.MAX_PAUSE)
                self.pauses += 1
                recent.clear()
