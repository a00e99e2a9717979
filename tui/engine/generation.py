"""The generation loop: one reply on llama.cpp's low-level API, in the worker process.

Per token the loop makes three ctypes calls (sample, is-end-of-generation, decode) and a few
dictionary look-ups; everything else (stop strings, the reasoning split, log-probabilities)
runs only when the request asks for it. The prompt reuses the KV cache up to the first token
that differs from the previous request's, and is evaluated in chunks a cancel can stop.

Tools reach the model through its own template (``tool_calls``): a parser of the template's
family cuts the calls out of the answer (for gpt-oss, out of the raw stream, before the
reasoning splitter, since a call is a message of its own); a forced call starts with the
family's opening markup in the prompt and goes on under a grammar of the tools' schemas.
Saving and restoring the KV state works on ``NativeContext.tokens``, the one record of what
the cache holds.
"""

from __future__ import annotations

import codecs
import json
import math
import random
import time
from dataclasses import dataclass, replace

from tui.engine.chat_prompt import ChatTemplate, TemplateError, continued, plain_transcript
from tui.engine.cores import CoreShare, share_of
from tui.engine.delivery import DeltaSender, Send, StopMatcher
from tui.engine.kv_state import MIN_TOKENS, DamagedState, StateStore, common_prefix
from tui.engine.lookup import DraftPolicy, PromptLookup, costs_from_environment
from tui.engine.native import (
    DecodeAborted,
    NativeContext,
    NativeError,
    NativeModel,
    SamplerChain,
)
from tui.engine.protocol import (
    Done,
    GenerateRequest,
    GenerationStats,
    SamplingParams,
    StopReason,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
)
from tui.engine.reasoning import (
    THINK,
    ReasoningFormat,
    ReasoningSplitter,
    format_for_template,
    opens_reasoning,
)
from tui.engine.tool_calls import (
    MARKERS,
    Family,
    ForcedCall,
    ToolCallParser,
    ToolChoiceError,
    family_for_template,
    forced_call,
    forced_name,
    generic_system,
    history_for,
    no_tool_support,
    openai_tools,
    with_system,
)

LOOKUP_PROBE = "The keeper of the north light wrote in the log each night: wind, ships, fog."


def lookup_is_exact(model: NativeModel, ctx: NativeContext) -> bool:
    """Whether prompt lookup gives the reply plain decoding gives, token for token: the
    cache can drop a rejected draft (not recurrent or hybrid models), and llama.cpp's logits
    for a token are the same in a batch as alone. That holds on the CPU with flash attention
    on one thread (generation on one thread: a reply that drafts checks its drafts on that
    one too, whatever the prompt's threads); not without flash attention (checked here on a
    short text, which catches it), nor with it on several threads past a few hundred tokens
    (too long to check at every load, so known here: tests/test_engine_lookup.py checks this
    build)."""
    opts = ctx.options
    if not model.cache_cuts_anywhere() or opts.n_threads > 1:
        return False
    tokens = model.tokenize(LOOKUP_PROBE, add_special=True, parse_special=False)
    ctx.set_threads(1, 1)  # drafts are checked on the one generation thread (_Reply.run)
    try:
        return ctx.batch_matches_single(tokens[8:14], after=tokens[:8])
    finally:
        ctx.set_threads(opts.n_threads, opts.n_threads_batch)


class CancelFlag:
    """Set from the worker's reader thread; read by the loop once per token (an attribute)."""

    def __init__(self) -> None:
        self.requested = False


@dataclass(frozen=True)
class ToolPlan:
    family: Family
    names: tuple[str, ...]
    forced: ForcedCall | None
    """A call the model must make: its opening markup is already in the prompt."""


@dataclass
class PromptPlan:
    tokens: list[int]
    stops: list[str]
    reasoning: ReasoningFormat | None
    """The markup to split the reply on; None for plain completions."""
    started_inside: bool
    """The template's generation prompt opened the reasoning block."""
    tools: ToolPlan | None = None


class Generator:
    """Replies from one loaded model and context."""

    def __init__(self, model: NativeModel, ctx: NativeContext, template: ChatTemplate | None,
                 *, seed: int, states: StateStore | None = None,
                 cores: CoreShare | None = None) -> None:
        self.model = model
        self.ctx = ctx
        self.states = states
        self.cores = cores
        self.threads = (ctx.options.n_threads, ctx.options.n_threads_batch)
        self.threads_now = self.threads[0]
        self.batch_threads_now = self.threads[1]
        self.template = template
        self.reasoning = format_for_template(template.source) if template else THINK
        self.tool_family = family_for_template(template.source if template else None)
        self.rng = random.Random(seed)
        self.lookup_exact = lookup_is_exact(model, ctx)
        self.batch_costs = costs_from_environment()
        """Measured by each reply that drafts; kept for the next (same model and context)."""
        self._visible: dict[int, bytes] = {}
        self._markers = frozenset(m.encode() for m in (*self.reasoning.markers,
                                                       *MARKERS[self.tool_family]))

    # --- prompts -------------------------------------------------------------------------

    def plan(self, req: GenerateRequest) -> PromptPlan:
        """Tokens of the prompt. Raises TemplateError (and ToolChoiceError)."""
        model = self.model
        if req.raw_prompt is not None:
            tokens = model.tokenize(req.raw_prompt, add_special=True, parse_special=False)
            return PromptPlan(tokens, [], None, False)
        family = self.tool_family
        messages = history_for(req.messages, family)
        tools = req.tools if req.tool_choice != "none" else ()
        tool_plan = None
        if tools:
            name = forced_name(req.tool_choice, tools)
            if name is None and family == "generic":
                raise ToolChoiceError(no_tool_support("this model"))
            if family == "generic":  # a forced call, asked for in words
                messages = with_system(messages, generic_system(tools, name or ""))
            tool_plan = ToolPlan(family, tuple(t.name for t in tools),
                                 forced_call(family, tools, name, req.sampling.max_tokens)
                                 if name is not None else None)
        if self.template is None:
            text, stops = plain_transcript(messages)
            tokens = model.tokenize(text, add_special=True, parse_special=False)
            return PromptPlan(tokens, stops, None, False, tool_plan)
        extra: dict[str, object] = {}
        if req.sampling.reasoning_budget == 0 and self.template.reads_enable_thinking:
            extra["enable_thinking"] = False
        if tools and family != "generic":
            extra["tools"] = openai_tools(tools)
        # a last assistant message is a reply to continue: the turns before it, the template's
        # opening of the assistant turn, then its text as it stands (no end-of-turn marker)
        head, partial = continued(messages)
        rendered = self.template.render(head, extra=extra)
        tokens = []
        for text, markup in rendered.segments:
            tokens += model.tokenize(text, add_special=False, parse_special=markup)
        if partial:
            tokens += model.tokenize(partial, add_special=False, parse_special=False)
        inside = opens_reasoning(self.reasoning, rendered.text) and not partial
        if tool_plan is not None and tool_plan.forced is not None:
            opening = tool_plan.forced.prefill
            if inside:  # no thinking before a forced call: close the block the prompt opened
                opening, inside = self.reasoning.force_close + opening, False
            tokens += model.tokenize(opening, add_special=False, parse_special=True)
        return PromptPlan(tokens, [], self.reasoning, inside, tool_plan)

    # --- one reply -----------------------------------------------------------------------

    def run(self, req: GenerateRequest, send: Send, cancel: CancelFlag,
            grammar: str | None = None) -> Done:
        """Generate one reply, streaming deltas through ``send``; returns the closing Done."""
        start = time.perf_counter()
        try:
            plan = self.plan(req)
        except (TemplateError, ToolChoiceError) as exc:
            return _failed(req.request_id, str(exc))
        if plan.tools is not None and plan.tools.forced is not None:
            if grammar is not None:
                return _failed(req.request_id, "a forced tool call brings its own grammar: "
                               "give no grammar or JSON schema with it")
            from tui.engine.structured import schema_grammar

            try:
                grammar = schema_grammar(json.dumps(plan.tools.forced.schema))
            except ValueError as exc:
                return _failed(req.request_id, f"the tools' schemas: {exc}")
        tokens = plan.tokens
        if not tokens:  # an empty completion prompt: start from the beginning of a text
            if self.model.bos() < 0:
                return _failed(req.request_id, "the prompt is empty: give some text")
            tokens = [self.model.bos()]
        n_ctx = self.ctx.n_ctx
        if len(tokens) >= n_ctx:
            return _failed(req.request_id, (
                f"the prompt is {len(tokens):,} tokens but the context window holds {n_ctx:,}: "
                "shorten it, start a new conversation, or load the model with a larger n_ctx"
            ), len(tokens))
        s = req.sampling
        try:
            chain = self._chain(s, grammar)
        except NativeError as exc:
            return _failed(req.request_id, str(exc), len(tokens))
        reply = _Reply(self, req, plan, send, cancel, start)
        if self.states is not None:
            reply.notes += self.use_saved_states(tokens)
        if self.cores is not None:
            self.cores.begin()
            reply.fewest_threads = self.balance_threads()
        try:
            reply.run(tokens, chain)
        except NativeError as exc:
            self.ctx.clear()  # the cache may hold half a batch: start clean next time
            reply.reason, reply.error = "error", f"generation failed: {exc}"
        finally:
            chain.free()
            if reply.drafts_on_one_thread:
                self.ctx.set_threads(self.threads_now, self.batch_threads_now)
            if self.cores is not None:
                self.cores.end()
        return reply.done()

    def balance_threads(self) -> int:
        """Run on this worker's share of its threads, given how many are generating now."""
        assert self.cores is not None
        active = self.cores.active()
        n = share_of(self.threads[0], active)
        if n != self.threads_now:
            self.batch_threads_now = share_of(self.threads[1], active)
            self.ctx.set_threads(n, self.batch_threads_now)
            self.threads_now = n
        return n

    # --- conversation states on disk ----------------------------------------------------

    def use_saved_states(self, tokens: list[int]) -> list[str]:
        """Before evaluating ``tokens``: save the sequence the cache holds when this prompt
        leaves most of it behind, and restore a saved one this prompt continues. Returns
        notes for the reply (a damaged state)."""
        ctx, states = self.ctx, self.states
        assert states is not None
        reuse = common_prefix(ctx.tokens, tokens)
        if len(ctx.tokens) - reuse >= MIN_TOKENS:
            self.save_current()
        if len(tokens) - reuse < MIN_TOKENS:
            return []
        found = states.best(tokens, reuse)
        if found is None:
            return []
        state, _shared = found
        try:
            payload = states.load(state)
        except DamagedState as exc:
            return [f"a saved state of this conversation was discarded ({exc}); it was "
                    "evaluated again"]
        if not ctx.set_seq_state(payload, state.tokens):
            states.discard(state.path)
            return ["a saved state of this conversation was discarded (llama.cpp refused "
                    "it); it was evaluated again"]
        return []

    def save_current(self, *, wait: bool = False) -> None:
        """Keep the cache's sequence on disk (when it is long enough and not kept already)."""
        states, tokens = self.states, self.ctx.tokens
        if states is None or len(tokens) < MIN_TOKENS or states.has(tokens):
            return
        states.save(tokens, self.ctx.seq_state(), wait=wait)

    def _chain(self, s: SamplingParams, grammar: str | None) -> SamplerChain:
        bias = list(s.logit_bias)
        if s.ignore_eos:
            bias += [(t, -math.inf) for t in self.model.eog_tokens()]
        seed = s.seed if s.seed is not None else self.rng.randrange(2**32)
        return SamplerChain(
            self.model, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
            min_p=s.min_p, repeat_penalty=s.repeat_penalty,
            presence_penalty=s.presence_penalty, frequency_penalty=s.frequency_penalty,
            seed=seed, logit_bias=bias, grammar=grammar,
        )

    def visible(self, token: int) -> bytes:
        """A token's text; control tokens are empty unless they are reasoning markup."""
        got = self._visible.get(token)
        if got is None:
            got = self.model.piece(token)
            if not got:
                special = self.model.piece(token, special=True)
                if special in self._markers:
                    got = special
            self._visible[token] = got
        return got


class _Reply:
    """The state of one reply in flight."""

    def __init__(self, gen: Generator, req: GenerateRequest, plan: PromptPlan, send: Send,
                 cancel: CancelFlag, start: float) -> None:
        self.gen = gen
        self.rid = req.request_id
        self.sampling = req.sampling
        self.plan = plan
        self.cancel = cancel
        self.start = start
        self.out = DeltaSender(send, self.rid, req.sampling.delta_gather_s)
        self.stopper = StopMatcher(list(req.sampling.stop) + plan.stops) if (
            req.sampling.stop or plan.stops) else None
        self.splitter = (ReasoningSplitter(plan.reasoning, started_inside=plan.started_inside)
                         if plan.reasoning is not None else None)
        self.tool_parser: ToolCallParser | None = None
        self.raw_tools = False  # the parser reads the raw stream (harmony), not the answer
        self.calls: list[ToolCall] = []
        self.notes: list[str] = []
        self.fewest_threads = gen.threads_now
        if plan.tools is not None:
            self.tool_parser = ToolCallParser(plan.tools.family, plan.tools.names)
            self.raw_tools = plan.tools.family == "harmony" and self.splitter is not None
            if plan.tools.forced is not None:
                self.tool_parser.feed(plan.tools.forced.prefill)
        self.answer: list[str] = []
        self.thought: list[str] = []
        self.logprobs: list[TokenLogprob] | None = (
            [] if req.sampling.top_logprobs is not None else None)
        self.reason: StopReason = "length"
        self.error: str | None = None
        self.n_prompt = 0
        self.reused = 0
        self.prompt_perf = (0.0, 0, 0.0, 0)
        self.prompt_seconds = 0.0
        self.n_generated = 0
        self.n_reasoning = 0
        self.first: float | None = None
        self.reasoning_end: float | None = None
        self.policy = DraftPolicy(gen.batch_costs)
        self.drafts_on_one_thread = False
        self.drafted = 0
        self.accepted = 0
        self.carry = 0  # tokens that showed no text yet
        self.pending_n = 0
        self.last_was_reasoning = False

    # --- the loop ------------------------------------------------------------------------

    def run(self, tokens: list[int], chain: SamplerChain) -> None:
        gen, ctx, cancel = self.gen, self.gen.ctx, self.cancel
        model = gen.model
        self.n_prompt = len(tokens)
        reuse = common_prefix(ctx.tokens, tokens)
        if reuse == len(tokens):
            reuse -= 1  # the last prompt token is evaluated again for fresh logits
        self.reused = ctx.keep_prefix(reuse)
        ctx.perf_reset()
        t0 = time.perf_counter()
        try:
            ctx.decode_many(tokens[self.reused:], lambda: cancel.requested)
        except DecodeAborted:
            self.reason = "cancelled"
            return
        self.prompt_seconds = time.perf_counter() - t0
        self.prompt_perf = ctx.perf()
        budget = self.sampling.reasoning_budget
        splitter = self.splitter
        constrained = self.sampling.grammar is not None or self.sampling.json_schema is not None
        if splitter is not None and splitter.in_reasoning and (budget == 0 or constrained):
            self.close_reasoning(None)  # no thinking asked, or the grammar starts the answer
        max_new = min(self.sampling.max_tokens, ctx.n_ctx - len(tokens))
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        visible, is_eog = gen.visible, model.is_eog
        sample, decode_one = chain.sample, ctx.decode_one
        route = self.route
        lookup = self.lookup_for(tokens, chain)
        if lookup is not None and gen.batch_threads_now > 1:
            # a batch on several threads rounds unlike one token: check drafts on one
            ctx.set_threads(gen.threads_now, 1)
            self.drafts_on_one_thread = True  # Generator.run puts the prompt's threads back
        policy, costs, clock = self.policy, gen.batch_costs, time.perf_counter
        ahead: list[int] = []  # a draft's tokens in the cache after the last sampled token
        at = -1  # the output whose logits give the next token
        drafted = 0  # the length of the draft being checked
        draft_kind = False  # whether it continued a copy
        while True:
            if cancel.requested:
                self.reason = "cancelled"
                break
            token = sample(ctx, at)
            if self.first is None:
                self.first = time.perf_counter()
            matched = bool(ahead) and token == ahead[0]
            if is_eog(token):
                self.reason = "stop"
                break
            self.n_generated += 1
            stopped = route(decoder.decode(visible(token)))
            if self.logprobs is not None and not self.last_was_reasoning:
                self.record_logprob(token, at)
            if stopped:
                self.reason = "stop"
                break
            if (self.n_generated >= max_new
                    or len(ctx.tokens) - len(ahead) + 1 >= ctx.n_ctx):
                self.reason = "length"
                break
            if gen.cores is not None and not self.n_generated & 31:  # another may have come
                self.fewest_threads = min(self.fewest_threads, gen.balance_threads())
            if (splitter is not None and budget >= 0 and splitter.in_reasoning
                    and self.n_reasoning >= budget):
                self.drop_draft(ahead)
                ahead, at = [], -1
                if not self.close_reasoning(token):
                    self.reason = "length"
                    break
                if lookup is not None:
                    lookup.extend(ctx.tokens[len(lookup.tokens):])
                    policy.forget_watched()
                continue
            if lookup is None:
                decode_one(token)
                continue
            if matched:  # the draft guessed right: this token is in the cache already
                lookup.push(token)
                del ahead[0]
                self.accepted += 1
                at += 1
                if not ahead:
                    policy.record(draft_kind, drafted, drafted)
                continue
            if ahead:  # the draft went wrong here: drop the rest of it
                policy.record(draft_kind, drafted, drafted - len(ahead))
                self.drop_draft(ahead)
                ahead = []
            lookup.push(token)
            if policy.watching:
                policy.see(token)
            following = lookup.following
            room = min(policy.longest, max_new - self.n_generated,
                       ctx.n_ctx - len(ctx.tokens) - 2, ctx.n_batch - 1)
            draft = lookup.propose(room)
            if draft:
                length = policy.length(following, len(draft))
                if length:
                    policy.stop_watching()
                    del draft[length:]
                    draft_kind = following
                else:
                    if not policy.watching:
                        policy.watch(following, draft)
                    draft = []
            started = clock()
            if draft:
                ctx.decode_all_logits([token, *draft])
                costs.batch(len(draft) + 1, clock() - started)
                ahead, at, drafted = draft, 0, len(draft)
                self.drafted += drafted
            else:
                decode_one(token)
                costs.single(clock() - started)
                at = -1
        self.drop_draft(ahead)
        tail = decoder.decode(b"", final=True)  # a character cut off by the end
        if tail and self.reason != "stop":
            self.route(tail, count=False)
        self.finish_text()

    def lookup_for(self, tokens: list[int], chain: SamplerChain) -> PromptLookup | None:
        """The draft proposer for this reply, or None where lookup is off: asked off, under a
        grammar (a draft would have to be checked against it token by token), or where it
        could change the reply (``lookup_is_exact``)."""
        if (not self.sampling.prompt_lookup or chain.grammar is not None
                or not self.gen.lookup_exact):
            return None
        return PromptLookup(self.gen.ctx.tokens)

    def drop_draft(self, ahead: list[int]) -> None:
        """Take the unchecked rest of a draft out of the cache."""
        if ahead:
            self.gen.ctx.keep_prefix(len(self.gen.ctx.tokens) - len(ahead))

    def route(self, text: str, *, count: bool = True) -> bool:
        """Send one token's text where it belongs; True when a stop string was reached."""
        self.pending_n = self.carry + 1 if count else 0  # with those that showed nothing yet
        stopped = self._route(text, count)
        self.carry = self.pending_n
        return stopped

    def _route(self, text: str, count: bool) -> bool:
        splitter = self.splitter
        if splitter is None:
            return self.emit_answer(text) if text else False
        if self.raw_tools and text:
            assert self.tool_parser is not None
            text, calls = self.tool_parser.feed(text)
            self.send_calls(calls)
        was = splitter.in_reasoning
        pieces = splitter.feed(text) if text else []
        self.last_was_reasoning = was or splitter.in_reasoning
        if self.last_was_reasoning and count:
            self.n_reasoning += 1
            self.reasoning_end = time.perf_counter()
        for part, piece in pieces:
            if part == "reasoning":
                self.thought.append(piece)
                self.out.add("reasoning", piece, self.take())
            elif self.emit_answer(piece):
                return True
        return False

    def take(self) -> int:
        """The token count the next delta carries (the first piece of a token gets it)."""
        n, self.pending_n = self.pending_n, 0
        return n

    def emit_answer(self, text: str) -> bool:
        if self.tool_parser is not None and not self.raw_tools:
            text, calls = self.tool_parser.feed(text)
            self.send_calls(calls)
        return self.show_answer(text)

    def send_calls(self, calls: list[ToolCall]) -> None:
        if not calls:
            return
        self.out.flush()
        for call in calls:
            self.out.send(ToolCallDelta(self.rid, len(self.calls), call.id, call.name,
                                        call.arguments))
            self.calls.append(call)

    def show_answer(self, text: str) -> bool:
        stopped = False
        if self.stopper is not None:
            text, stopped = self.stopper.feed(text)
        if text:
            self.answer.append(text)
            self.out.add("answer", text, self.take())
        return stopped

    def close_reasoning(self, token: int | None) -> bool:
        """Close the reasoning block: feed the format's closing markup after ``token``.
        False when the context has no room left for it."""
        gen, splitter = self.gen, self.splitter
        assert splitter is not None
        close = splitter.fmt.force_close
        forced = gen.model.tokenize(close, add_special=False, parse_special=True)
        batch = ([token] if token is not None else []) + forced
        if len(gen.ctx.tokens) + len(batch) + 1 >= gen.ctx.n_ctx:
            return False
        gen.ctx.decode_many(batch)
        for part, piece in splitter.feed(close):
            if part == "reasoning":
                self.thought.append(piece)
                self.out.add("reasoning", piece, 0)
        self.reasoning_end = time.perf_counter()
        return True

    def finish_text(self) -> None:
        self.pending_n = 0
        parser = self.tool_parser
        if parser is not None and self.raw_tools and self.splitter is not None:
            rest, calls = parser.close()
            self.send_calls(calls)
            for part, piece in self.splitter.feed(rest) if rest else []:
                if part == "reasoning":
                    self.thought.append(piece)
                    self.out.add("reasoning", piece, 0)
                else:
                    self.show_answer(piece)
        if self.splitter is not None:
            for part, piece in self.splitter.close():
                if part == "reasoning":
                    self.thought.append(piece)
                    self.out.add("reasoning", piece, 0)
                else:
                    self.emit_answer(piece)
        if parser is not None and not self.raw_tools:
            rest, calls = parser.close()
            self.send_calls(calls)
            if rest:
                self.show_answer(rest)
        if self.stopper is not None and self.reason != "stop":
            held = self.stopper.flush()
            if held:
                self.answer.append(held)
                self.out.add("answer", held, 0)
        self.out.flush()

    def record_logprob(self, token: int, output: int = -1) -> None:
        import numpy as np

        assert self.logprobs is not None  # reasoning tokens carry none: Done covers the answer
        logits = self.gen.ctx.logits(output).astype(np.float64)
        top = logits.max()
        log_z = top + math.log(float(np.exp(logits - top).sum()))
        k = self.sampling.top_logprobs or 0
        alternatives: tuple[tuple[str, float], ...] = ()
        if k:
            best = np.argpartition(-logits, k)[:k]
            best = best[np.argsort(-logits[best])]
            alternatives = tuple(
                (self.text_of(int(t)), float(logits[t] - log_z)) for t in best)
        self.logprobs.append(TokenLogprob(self.text_of(token), float(logits[token] - log_z),
                                          alternatives))

    def text_of(self, token: int) -> str:
        return self.gen.visible(token).decode("utf-8", "replace")

    # --- the closing event ---------------------------------------------------------------

    def done(self) -> Done:
        now = time.perf_counter()
        prompt_ms, prompt_n, eval_ms, eval_n = self.prompt_perf
        evaluated = self.n_prompt - self.reused if self.n_prompt else 0
        prompt_rate = 0.0
        if prompt_ms + eval_ms > 0:
            prompt_rate = (prompt_n + eval_n) / ((prompt_ms + eval_ms) / 1000)
        elif self.prompt_seconds > 0:
            prompt_rate = evaluated / self.prompt_seconds
        gen_rate = 0.0
        all_p_ms, _, all_e_ms, all_e_n = self.gen.ctx.perf()
        gen_ms = (all_e_ms - eval_ms) + (all_p_ms - prompt_ms)
        gen_n = all_e_n - eval_n
        if self.drafted:  # drafts are checked in batches, which llama.cpp counts as prompt
            gen_n = max(self.n_generated - 1, 1)
        if gen_n > 0 and gen_ms > 0:
            gen_rate = gen_n / (gen_ms / 1000)
        elif self.first is not None and self.n_generated > 1 and now > self.first:
            gen_rate = (self.n_generated - 1) / (now - self.first)
        first = self.first if self.first is not None else now
        reasoning_s = 0.0
        if self.n_reasoning and self.reasoning_end is not None:
            reasoning_s = max(self.reasoning_end - first, 0.0)
        stats = GenerationStats(
            prompt_tokens=self.n_prompt, prompt_tokens_per_s=prompt_rate,
            generated_tokens=self.n_generated, generation_tokens_per_s=gen_rate,
            time_to_first_token_s=first - self.start, reused_tokens=self.reused,
            evaluated_prompt_tokens=evaluated, stop_reason=self.reason,
            total_seconds=now - self.start,
            reasoning_tokens=min(self.n_reasoning, self.n_generated),
            reasoning_seconds=reasoning_s, n_threads=self.fewest_threads,
            drafted_tokens=self.drafted, accepted_tokens=self.accepted,
        )
        if self.calls and self.reason in ("stop", "length"):
            stats = replace(stats, stop_reason="tool_calls")
        text = "".join(self.answer)
        logprobs = tuple(self.logprobs or ())
        if logprobs and self.reason == "stop" and self.stopper is not None:
            logprobs = _within(logprobs, len(text))
        return Done(self.rid, text, stats, self.error, reasoning="".join(self.thought),
                    tool_calls=tuple(self.calls), logprobs=logprobs, notes=tuple(self.notes))


def _within(logprobs: tuple[TokenLogprob, ...], length: int) -> tuple[TokenLogprob, ...]:
    """The entries whose token starts inside the first ``length`` characters."""
    kept, at = [], 0
    for entry in logprobs:
        if at >= length:
            break
        kept.append(entry)
        at += len(entry.token)
    return tuple(kept)


def _failed(rid: int, message: str, prompt_tokens: int = 0) -> Done:
    stats = GenerationStats(prompt_tokens, 0.0, 0, 0.0, 0.0, 0, 0, "error", 0.0)
    return Done(rid, "", stats, message)
