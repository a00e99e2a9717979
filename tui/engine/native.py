"""A model and its context on llama-cpp-python's low-level (ctypes) API.

Imported only inside a model worker or a benchmark's reference process, never by the app.
Each call here is one ctypes call into llama.cpp; the generation loop (tui.engine.generation)
composes them so that the per-token Python work is a handful of such calls.
"""

from __future__ import annotations

import ctypes
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tui.i18n import _

L: Any = None
"""llama_cpp once ``backend_init`` ran (typed loosely: its ctypes signatures are not worth
mirroring for mypy). Loaded on first use, so importing this module loads nothing."""


class NativeError(Exception):
    """llama.cpp refused something; the message says what, never echoing a prompt."""


class DecodeAborted(Exception):
    """Prompt evaluation stopped by a cancel; ``kept`` tokens of it stay in the KV cache."""

    def __init__(self, kept: int) -> None:
        super().__init__(_("aborted after {kept} tokens", kept=kept))
        self.kept = kept


@dataclass(frozen=True)
class ContextOptions:
    n_ctx: int
    n_batch: int
    n_threads: int
    n_threads_batch: int
    flash_attn: bool
    embeddings: bool = False
    pooling: int = -1
    """llama.cpp's pooling type; -1 lets the model say (embedding models carry their own)."""
    n_seq_max: int = 1


def backend_init() -> None:
    """Once per process; llama.cpp's log keeps errors only (llama-cpp-python's
    own callback prints every line unless told otherwise; this build logs much as warnings)."""
    global L
    if L is None:
        import logging

        lib = importlib.import_module("llama_cpp")
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        lib.llama_backend_init()
        L = lib


def gpu_devices() -> list[str]:
    """The GPU devices llama.cpp can offload to. ``llama_supports_gpu_offload`` is not
    this: it is also true for a CPU build that carries the RPC backend."""
    backend_init()
    lib = L.llama_cpp._lib
    count = lib.ggml_backend_dev_count
    count.restype, count.argtypes = ctypes.c_size_t, []
    get = lib.ggml_backend_dev_get
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    kind = lib.ggml_backend_dev_type
    kind.restype, kind.argtypes = ctypes.c_int, [ctypes.c_void_p]
    name = lib.ggml_backend_dev_name
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    found = []
    for i in range(count()):
        dev = get(i)
        if kind(dev) in (GPU_DEVICE, IGPU_DEVICE):
            found.append((name(dev) or b"?").decode("utf-8", "replace"))
    return found


GPU_DEVICE, IGPU_DEVICE = 1, 2  # enum ggml_backend_dev_type


class NativeModel:
    """The weights and vocabulary of one GGUF file."""

    def __init__(self, path: str, *, n_gpu_layers: int,
                 tensor_split: Sequence[float] = ()) -> None:
        backend_init()
        params = L.llama_model_default_params()
        params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
        self._split: Any = None
        if tensor_split:  # each device's share of the layers (RPC workers, GPUs)
            n = max(int(L.llama_max_devices()), len(tensor_split))
            self._split = (ctypes.c_float * n)(*tensor_split)
            params.tensor_split = self._split
        self.model = L.llama_model_load_from_file(os.fsencode(path), params)
        if not self.model:
            raise NativeError(_("llama.cpp returned no model"))
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = int(L.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(L.llama_model_n_ctx_train(self.model))
        self.n_embd = int(L.llama_model_n_embd(self.model))
        self._pieces: dict[int, bytes] = {}
        self._special_pieces: dict[int, bytes] = {}
        self._eog: frozenset[int] | None = None

    def close(self) -> None:
        if self.model:
            L.llama_model_free(self.model)
            self.model = None

    # --- facts ---------------------------------------------------------------------------

    def metadata(self) -> dict[str, str]:
        out: dict[str, str] = {}
        buf = ctypes.create_string_buffer(1024)
        for i in range(int(L.llama_model_meta_count(self.model))):
            n = L.llama_model_meta_key_by_index(self.model, i, buf, len(buf))
            if n < 0:
                continue
            key = buf.value.decode("utf-8", "replace")
            n = L.llama_model_meta_val_str_by_index(self.model, i, buf, len(buf))
            if n >= len(buf):  # long values (the chat template) need a bigger buffer
                big = ctypes.create_string_buffer(n + 1)
                L.llama_model_meta_val_str_by_index(self.model, i, big, len(big))
                out[key] = big.value.decode("utf-8", "replace")
            elif n >= 0:
                out[key] = buf.value.decode("utf-8", "replace")
        return out

    def chat_template(self) -> str | None:
        raw = L.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", "replace") if raw else None

    def n_params(self) -> int:
        return int(L.llama_model_n_params(self.model))

    def size(self) -> int:
        return int(L.llama_model_size(self.model))

    def n_layers(self) -> int:
        return int(L.llama_model_n_layer(self.model))

    def cache_cuts_anywhere(self) -> bool:
        """Whether the KV cache can drop its last tokens alone (not for recurrent or hybrid
        models, whose state is one summary of everything before)."""
        return not (L.llama_model_is_recurrent(self.model) or L.llama_model_is_hybrid(self.model)
                    or L.llama_model_is_diffusion(self.model))

    def bos(self) -> int:
        return int(L.llama_vocab_bos(self.vocab))

    def eos(self) -> int:
        return int(L.llama_vocab_eos(self.vocab))

    def adds_bos(self) -> bool:
        return bool(L.llama_vocab_get_add_bos(self.vocab))

    def is_eog(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.vocab, token))

    def is_control(self, token: int) -> bool:
        return bool(L.llama_vocab_is_control(self.vocab, token))

    def eog_tokens(self) -> frozenset[int]:
        if self._eog is None:
            is_eog, vocab = L.llama_vocab_is_eog, self.vocab
            self._eog = frozenset(t for t in range(self.n_vocab) if is_eog(vocab, t))
        return self._eog

    def special_tokens(self) -> list[tuple[int, str]]:
        """Every control or user-defined token whose text is markup (``<|im_end|>``...)."""
        found = []
        for token in range(self.n_vocab):
            attr = int(L.llama_vocab_get_attr(self.vocab, token))
            if attr & (L.LLAMA_TOKEN_ATTR_CONTROL | L.LLAMA_TOKEN_ATTR_USER_DEFINED):
                text = self.piece(token, special=True).decode("utf-8", "replace")
                if text:
                    found.append((token, text))
        return found

    # --- text <-> tokens -----------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8", "replace")  # a lone surrogate becomes "?", never a crash
        capacity = len(data) + 8
        buf = (L.llama_token * capacity)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special,
                             parse_special)
        if n < 0:
            capacity = -n
            buf = (L.llama_token * capacity)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special,
                                 parse_special)
            if n < 0:
                raise NativeError(_("llama.cpp could not tokenize a text of {count} bytes",
                                    count=len(data)))
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (cached: a dictionary look-up after the first time)."""
        cache = self._special_pieces if special else self._pieces
        got = cache.get(token)
        if got is None:
            buf = ctypes.create_string_buffer(64)
            n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            if n > len(buf):
                buf = ctypes.create_string_buffer(n)
                n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            got = buf.raw[: max(n, 0)]
            cache[token] = got
        return got

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> bytes:
        return b"".join(self.piece(t, special=special) for t in tokens)


class NativeContext:
    """A context (KV cache, threads) on a model, and the token list its KV cache holds."""

    def __init__(self, model: NativeModel, options: ContextOptions) -> None:
        self.model = model
        self.options = options
        params = L.llama_context_default_params()
        params.n_ctx = options.n_ctx
        params.n_batch = options.n_batch
        params.n_ubatch = options.n_batch
        params.n_threads = options.n_threads
        params.n_threads_batch = options.n_threads_batch
        params.flash_attn_type = (L.LLAMA_FLASH_ATTN_TYPE_ENABLED if options.flash_attn
                                  else L.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.no_perf = False
        params.embeddings = options.embeddings
        params.pooling_type = options.pooling
        params.n_seq_max = options.n_seq_max
        if options.n_seq_max > 1:
            params.kv_unified = True
        self.ctx = L.llama_init_from_model(model.model, params)
        if not self.ctx:
            raise NativeError(_("llama.cpp could not create a context (not enough memory?)"))
        self.mem = L.llama_get_memory(self.ctx)
        self.n_ctx = int(L.llama_n_ctx(self.ctx))
        self.n_batch = int(L.llama_n_batch(self.ctx))
        self.tokens: list[int] = []
        """The tokens whose keys and values are in the cache, in order (sequence 0)."""
        self._one = (L.llama_token * 1)()
        self._one_batch = L.llama_batch_get_one(self._one, 1)
        self._abort_cb: Any = None
        self._lora: Any = None
        self._draft: Any = None
        self._draft_capacity = 0

    def close(self) -> None:
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self._draft is not None:
            L.llama_batch_free(self._draft)
            self._draft = None
        if self._lora is not None:
            L.llama_adapter_lora_free(self._lora)
            self._lora = None

    def set_lora(self, path: str, scale: float = 1.0) -> None:
        adapter = L.llama_adapter_lora_init(self.model.model, os.fsencode(path))
        if not adapter:
            raise NativeError(_("llama.cpp could not read the LoRA adapter"))
        self._lora = adapter
        adapters = (L.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(scale)
        if L.llama_set_adapters_lora(self.ctx, adapters, 1, scales):
            raise NativeError(_("llama.cpp could not apply the LoRA adapter to this model"))

    # --- the KV cache --------------------------------------------------------------------

    def keep_prefix(self, n: int) -> int:
        """Drop the cache after its first ``n`` tokens; returns how many were kept."""
        n = min(n, len(self.tokens))
        if n < len(self.tokens):
            if not L.llama_memory_seq_rm(self.mem, 0, n, -1):
                L.llama_memory_clear(self.mem, True)  # a model that cannot cut (recurrent)
                n = 0
            del self.tokens[n:]
        return n

    def clear(self) -> None:
        L.llama_memory_clear(self.mem, True)
        self.tokens.clear()

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        L.llama_set_n_threads(self.ctx, n_threads, n_threads_batch)

    def seq_state(self) -> bytes:
        """llama.cpp's state of sequence 0 (its keys and values), as bytes."""
        size = int(L.llama_state_seq_get_size(self.ctx, 0))
        buf = (ctypes.c_ubyte * size)()
        written = int(L.llama_state_seq_get_data(self.ctx, buf, size, 0))
        return bytes(memoryview(buf)[:written])

    def set_seq_state(self, data: bytes, tokens: Sequence[int]) -> bool:
        """Replace the cache with a saved sequence state holding ``tokens``; False (and an
        empty cache) when llama.cpp refuses it."""
        self.clear()
        buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        if int(L.llama_state_seq_set_data(self.ctx, buf, len(data), 0)) == 0:
            self.clear()
            return False
        if int(L.llama_memory_seq_pos_max(self.mem, 0)) + 1 != len(tokens):
            self.clear()
            return False
        self.tokens = list(tokens)
        return True

    # --- evaluation ----------------------------------------------------------------------

    def decode_one(self, token: int) -> None:
        """Feed one sampled token: the hot path, two ctypes calls."""
        self._one[0] = token
        rc = L.llama_decode(self.ctx, self._one_batch)
        if rc != 0:
            raise NativeError(_decode_failure(rc))
        self.tokens.append(token)

    def decode_all_logits(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` (at most n_batch) in one batch with the logits of every
        position kept: output ``i`` holds the logits after ``tokens[i]`` (a draft's check)."""
        n = len(tokens)
        if n > self._draft_capacity:
            if self._draft is not None:
                L.llama_batch_free(self._draft)
            self._draft = L.llama_batch_init(n, 0, 1)
            self._draft_capacity = n
        batch, base = self._draft, len(self.tokens)
        token, pos, n_seq, seq, want = (batch.token, batch.pos, batch.n_seq_id, batch.seq_id,
                                        batch.logits)
        for i, t in enumerate(tokens):
            token[i], pos[i], n_seq[i], want[i] = t, base + i, 1, 1
            seq[i][0] = 0
        batch.n_tokens = n
        rc = L.llama_decode(self.ctx, batch)
        if rc != 0:
            raise NativeError(_decode_failure(rc))
        self.tokens.extend(tokens)

    def batch_matches_single(self, tokens: Sequence[int], after: Sequence[int] = ()) -> bool:
        """Whether ``tokens`` (a draft's few), evaluated after ``after`` in one batch, give bit
        for bit the logits they give one at a time. Not so everywhere: llama.cpp's CPU
        attention without flash attention, and with it on more than one thread past a few
        hundred tokens, sums in an order that depends on the batch. Leaves the cache empty."""
        import numpy as np

        self.clear()
        try:
            self.decode_many(after)
            self.decode_all_logits(tokens)
            together = [np.array(self.logits(i)) for i in range(len(tokens))]
            self.keep_prefix(len(after))
            for i, token in enumerate(tokens):
                self.decode_one(token)
                if not np.array_equal(self.logits(), together[i]):
                    return False
            return True
        finally:
            self.clear()

    def decode_many(self, tokens: Sequence[int], should_stop: Callable[[], bool] | None = None
                    ) -> None:
        """Evaluate ``tokens`` in chunks of n_batch. With ``should_stop``, a cancel stops it
        between chunks and inside one (llama.cpp's abort callback), raising DecodeAborted."""
        if should_stop is not None:
            self._abort_cb = L.ggml_abort_callback(lambda _data: bool(should_stop()))
            L.llama_set_abort_callback(self.ctx, self._abort_cb, None)
        try:
            for start in range(0, len(tokens), self.n_batch):
                if should_stop is not None and should_stop():
                    raise DecodeAborted(len(self.tokens))
                chunk = list(tokens[start:start + self.n_batch])
                arr = (L.llama_token * len(chunk))(*chunk)
                rc = L.llama_decode(self.ctx, L.llama_batch_get_one(arr, len(chunk)))
                if rc == 2:  # aborted: the ubatches already done stay in the cache
                    kept = int(L.llama_memory_seq_pos_max(self.mem, 0)) + 1
                    done = max(kept - len(self.tokens), 0)
                    self.tokens.extend(chunk[:done])
                    raise DecodeAborted(len(self.tokens))
                if rc != 0:
                    raise NativeError(_decode_failure(rc))
                self.tokens.extend(chunk)
        finally:
            if should_stop is not None:
                L.llama_set_abort_callback(self.ctx, L.ggml_abort_callback(), None)
                self._abort_cb = None

    def logits(self, index: int = -1) -> Any:
        """An output's logits (default the last) as a numpy view (no copy)."""
        import numpy as np

        ptr = L.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))

    # --- figures -------------------------------------------------------------------------

    def perf_reset(self) -> None:
        L.llama_perf_context_reset(self.ctx)

    def perf(self) -> tuple[float, int, float, int]:
        """(prompt ms, prompt tokens, generation ms, generated tokens) since the reset."""
        data = L.llama_perf_context(self.ctx)
        return float(data.t_p_eval_ms), int(data.n_p_eval), float(data.t_eval_ms), int(
            data.n_eval)


def _decode_failure(rc: int) -> str:
    if rc == 1:
        # kept in English: serve tells a context overflow from other failures by this text
        return "the context window is full (no room in the KV cache)"
    return _("llama_decode failed with code {rc}", rc=rc)


class SamplerChain:
    """llama.cpp's native sampler chain for one reply."""

    def __init__(self, model: NativeModel, *, temperature: float, top_k: int, top_p: float,
                 min_p: float, repeat_penalty: float, presence_penalty: float,
                 frequency_penalty: float, seed: int, logit_bias: Sequence[tuple[int, float]],
                 grammar: str | None, penalty_last_n: int = 64) -> None:
        chain_params = L.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        self.chain = L.llama_sampler_chain_init(chain_params)
        add = L.llama_sampler_chain_add
        if logit_bias:
            biases = (L.llama_logit_bias * len(logit_bias))()
            for i, (token, bias) in enumerate(logit_bias):
                biases[i].token, biases[i].bias = token, bias
            add(self.chain, L.llama_sampler_init_logit_bias(model.n_vocab, len(logit_bias),
                                                            biases))
        add(self.chain, L.llama_sampler_init_penalties(
            model.n_vocab, penalty_last_n, repeat_penalty, frequency_penalty, presence_penalty))
        self.grammar: Any = None
        if grammar is not None:
            # kept out of the chain and checked lazily, as llama.cpp's own sampler does:
            # matching the whole vocabulary against the grammar on every token is slow
            self.grammar = L.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
            if not self.grammar:
                self.free()
                raise NativeError(_("the grammar does not parse (check its GBNF syntax)"))
            self._candidates = _Candidates(model.n_vocab)
            self._one = _Candidates(1)
        if temperature == 0.0:
            add(self.chain, L.llama_sampler_init_greedy())
        else:
            add(self.chain, L.llama_sampler_init_top_k(top_k))
            add(self.chain, L.llama_sampler_init_top_p(top_p, 1))
            add(self.chain, L.llama_sampler_init_min_p(min_p, 1))
            add(self.chain, L.llama_sampler_init_temp(temperature))
            add(self.chain, L.llama_sampler_init_dist(seed))

    def sample(self, ctx: NativeContext, index: int = -1) -> int:
        """Pick the next token from an output's logits (default the last); the chain
        records it (penalties)."""
        if self.grammar is None:
            return int(L.llama_sampler_sample(self.chain, ctx.ctx, index))
        logits = ctx.logits(index)
        cands = self._candidates
        token = cands.pick(self.chain, logits)
        one = self._one
        one.set_single(token)
        L.llama_sampler_apply(self.grammar, one.ref)
        if one.rejected():  # the grammar refuses the free pick: pick again among what it allows
            cands.fill(logits)
            L.llama_sampler_apply(self.grammar, cands.ref)
            token = cands.pick(self.chain, None)
        L.llama_sampler_accept(self.grammar, token)
        L.llama_sampler_accept(self.chain, token)
        return token

    def accept(self, token: int) -> None:
        L.llama_sampler_accept(self.chain, token)
        if self.grammar is not None:
            L.llama_sampler_accept(self.grammar, token)

    def free(self) -> None:
        if self.chain:
            L.llama_sampler_free(self.chain)
            self.chain = None
        if getattr(self, "grammar", None):
            L.llama_sampler_free(self.grammar)
            self.grammar = None


class _Candidates:
    """A reusable ``llama_token_data_array`` over numpy memory (for lazy grammar checks)."""

    def __init__(self, n: int) -> None:
        import numpy as np

        self.np = np
        self.n = n
        self.data = np.zeros(n, dtype=np.dtype([("id", np.int32), ("logit", np.float32),
                                                ("p", np.float32)]))
        self.ids = np.arange(n, dtype=np.int32)
        self.array = L.llama_token_data_array(
            data=self.data.ctypes.data_as(ctypes.POINTER(L.llama_token_data)), size=n,
            selected=-1, sorted=False)
        self.ref = ctypes.byref(self.array)

    def fill(self, logits: Any) -> None:
        self.data["id"] = self.ids
        self.data["logit"] = logits
        self.data["p"] = 0.0
        self.array.size, self.array.selected, self.array.sorted = self.n, -1, False

    def pick(self, chain: Any, logits: Any) -> int:
        """Run ``chain`` over the candidates (filled from ``logits`` first, unless None)."""
        if logits is not None:
            self.fill(logits)
        L.llama_sampler_apply(chain, self.ref)
        return int(self.array.data[self.array.selected].id)

    def set_single(self, token: int) -> None:
        self.data[0] = (token, 1.0, 0.0)
        self.array.size, self.array.selected, self.array.sorted = 1, -1, False

    def rejected(self) -> bool:
        return bool(self.np.isneginf(self.array.data[0].logit))
