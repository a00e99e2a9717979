"""Prompt lookup: draft tokens for speculative decoding taken from the context itself.

A reply that copies from its context (a rewrite, an edit, a summary quoting its source)
repeats runs of tokens the context already holds. The proposer finds the tokens that
followed the latest match of the reply's last few tokens (an n-gram, longest first, the
candidate whose match reaches furthest back among the recent ones) and offers what came
after as a draft; once a draft is accepted it keeps following the same place, so a long
copy is drafted without a search per token. The loop verifies a draft in one batch, so
a wrong draft costs time, never a different output.

Pure Python over token ids, updated incrementally (a few dictionary operations a token),
so it is tested without a model. ``DraftPolicy`` decides per proposal whether a draft pays
here, from measured batch costs (``BatchCosts``) and how often the reply's proposals come
true.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable

MAX_NGRAM = 3
MIN_NGRAM = 2
"""A single token's last occurrence predicts the next one too seldom to be worth a
proposal (about one time in eight in free-form chat)."""
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

    @property
    def following(self) -> bool:
        """The last token continued a copy: the next proposal carries on from there."""
        return self._follow is not None

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


class BatchCosts:
    """What checking a draft costs on this context: a batch of n tokens against one token,
    measured as the loop goes. On a GPU a batch of 11 costs about what one token does; on a
    small CPU it can cost eight times as much, and a batch of 2 twice (so a short draft
    never pays there). A size not measured yet is assumed to cost ``1 + PRIOR_SLOPE * (n -
    1)``: hopeful enough that each length gets tried once, then its own figure rules."""

    PRIOR_SLOPE = 0.5
    REFRESH = 8
    """Batches in a row after which one token is decoded alone again: a token's cost grows
    with the context, and a ratio to an old figure would drift up and stop the drafts."""

    def __init__(self, *, flat: bool = False) -> None:
        self.flat = flat
        """Take every batch to cost one token's decode (``LMDESK_LOOKUP=always``): every
        proposal is drafted at the longest length, whatever it costs here."""
        self.one = 0.0
        """Seconds one token's decode takes (a moving average: it grows with the context)."""
        self._ratio: dict[int, float] = {}
        self._batches_in_a_row = 0

    @property
    def stale(self) -> bool:
        """Time to decode one token alone (see ``REFRESH``)."""
        return not self.flat and self._batches_in_a_row >= self.REFRESH

    def single(self, seconds: float) -> None:
        self.one = seconds if self.one <= 0 else self.one * 0.9 + seconds * 0.1
        self._batches_in_a_row = 0

    def batch(self, n: int, seconds: float) -> None:
        self._batches_in_a_row += 1
        if self.one <= 0:
            return
        ratio = seconds / self.one
        old = self._ratio.get(n)
        self._ratio[n] = ratio if old is None else old * 0.8 + ratio * 0.2

    def ratio(self, n: int) -> float:
        """A batch of ``n`` tokens over one token's decode."""
        if n <= 1 or self.flat:
            return 1.0
        return self._ratio.get(n, 1.0 + self.PRIOR_SLOPE * (n - 1))


DRAFT_LENGTHS = (3, 6, 10)
"""The draft lengths the policy chooses from: few, so each one's cost is soon measured."""


def costs_from_environment() -> BatchCosts:
    """``LMDESK_LOOKUP=always`` drafts every proposal (to check that drafts change nothing,
    or where the measured costs mislead); otherwise drafts go where they pay."""
    return BatchCosts(flat=os.environ.get("LMDESK_LOOKUP", "").strip().lower() == "always")


class DraftPolicy:
    """When one reply drafts, and how long: the draft length whose expected tokens per unit
    of decode time beat plain decoding by ``MARGIN``, from what a batch costs here
    (``BatchCosts``) and how often this reply's proposals came true. Proposals it does not
    draft are watched as the tokens come (free: no decode), so a reply that starts copying
    after a preamble is noticed, and one that never copies drafts almost never. A draft that
    continues a copy (the previous token followed one) is judged apart from a fresh match:
    the first runs long, the second misses often. The chance that each next token of a
    proposal comes true is taken as one figure per kind (recent outcomes, a uniform prior),
    so a draft of k tokens is expected to give 1 + q + q^2 + ... + q^k tokens."""

    MARGIN = 1.02
    WINDOW = 16

    def __init__(self, costs: BatchCosts, lengths: tuple[int, ...] = DRAFT_LENGTHS) -> None:
        self.costs = costs
        self.lengths = lengths
        self.longest = max(lengths)
        self._outcomes: dict[bool, deque[tuple[int, int]]] = {
            True: deque(maxlen=self.WINDOW), False: deque(maxlen=self.WINDOW)}
        """kind (continuing a copy) -> (tokens that came true, 1 if it then missed)."""
        self._watched: list[int] = []
        self._watched_kind = False
        self._watched_hits = 0

    def rate(self, following: bool) -> float:
        """The chance that the next token of a proposal of this kind comes true."""
        seen = self._outcomes[following]
        hits = sum(h for h, _ in seen)
        misses = sum(m for _, m in seen)
        return (hits + 1) / (hits + misses + 2)

    def length(self, following: bool, room: int) -> int:
        """How many tokens of a proposal (``room`` of them at most) to draft; 0: none."""
        if self.costs.stale:
            return 0
        q = self.rate(following)
        best, best_gain = 0, self.MARGIN
        expected = chance = 1.0
        for k in range(1, min(room, self.longest) + 1):
            chance *= q
            expected += chance
            if k in self.lengths:
                gain = expected / self.costs.ratio(k + 1)
                if gain > best_gain:
                    best, best_gain = k, gain
        return best

    def record(self, following: bool, drafted: int, accepted: int) -> None:
        """A draft was checked: ``accepted`` of its ``drafted`` tokens were right."""
        self._outcomes[following].append((accepted, int(accepted < drafted)))

    @property
    def watching(self) -> bool:
        return bool(self._watched)

    def watch(self, following: bool, proposal: list[int]) -> None:
        """A proposal not drafted: score it against the tokens as they come (``see``)."""
        self._watched = proposal
        self._watched_kind = following
        self._watched_hits = 0

    def see(self, token: int) -> None:
        """The next token of the reply, while a proposal is watched."""
        watched, hits = self._watched, self._watched_hits
        if watched[hits] == token:
            hits += 1
            if hits < len(watched):
                self._watched_hits = hits
                return
        self._outcomes[self._watched_kind].append((hits, int(hits < len(watched))))
        self._watched = []

    def stop_watching(self) -> None:
        """A draft is made while a proposal is watched: what came true of it so far counts."""
        if self._watched:
            self._outcomes[self._watched_kind].append((self._watched_hits, 0))
            self._watched = []

    def forget_watched(self) -> None:
        """Tokens came that were not sampled (a forced end of reasoning): stop watching."""
        self._watched = []
