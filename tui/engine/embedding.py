"""Text embeddings in the worker, on a context of their own beside the chat context.

An embedding model (its GGUF names a pooling type) pools as it was trained to; a chat model
gives the mean of its last hidden states over the text's tokens. Vectors are L2-normalised,
so a dot product is the cosine. Several short texts share one batch (one sequence each).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tui.engine import native
from tui.engine.native import ContextOptions, NativeContext, NativeError, NativeModel
from tui.i18n import _

EMBED_CTX = 512
"""Tokens per batch and the longest text embedded whole (longer ones are cut)."""
MAX_SEQS = 32


class TextEmbedder:
    def __init__(self, model: NativeModel, *, n_threads: int, n_threads_batch: int) -> None:
        self.model = model
        meta = model.metadata()
        arch = meta.get("general.architecture", "")
        own = meta.get(f"{arch}.pooling_type")
        self.own_pooling = own not in (None, "0")
        pooling = -1 if self.own_pooling else native.L.LLAMA_POOLING_TYPE_MEAN
        n_ctx = min(EMBED_CTX, model.n_ctx_train or EMBED_CTX)
        self.ctx = NativeContext(model, ContextOptions(
            n_ctx=n_ctx, n_batch=n_ctx, n_threads=n_threads, n_threads_batch=n_threads_batch,
            flash_attn=False, embeddings=True, pooling=pooling, n_seq_max=MAX_SEQS))
        self.n_ctx = self.ctx.n_ctx
        self.batch = native.L.llama_batch_init(self.n_ctx, 0, 1)
        self.encoder = bool(native.L.llama_model_has_encoder(model.model)) and not bool(
            native.L.llama_model_has_decoder(model.model))

    def close(self) -> None:
        native.L.llama_batch_free(self.batch)
        self.ctx.close()

    def embed(self, texts: Sequence[str]) -> tuple[tuple[tuple[float, ...], ...], int]:
        """One normalised vector per text, and the tokens read."""
        tokenized = []
        for text in texts:
            tokens = self.model.tokenize(text, add_special=True, parse_special=False)
            tokenized.append(tokens[: self.n_ctx] or [max(self.model.bos(), 0)])
        vectors: list[tuple[float, ...]] = []
        start = 0
        while start < len(tokenized):
            end, used = start, 0
            while (end < len(tokenized) and end - start < MAX_SEQS
                   and used + len(tokenized[end]) <= self.n_ctx):
                used += len(tokenized[end])
                end += 1
            vectors += self._batch(tokenized[start:end])
            start = end
        return tuple(vectors), sum(len(t) for t in tokenized)

    def _batch(self, group: list[list[int]]) -> list[tuple[float, ...]]:
        batch = self.batch
        k = 0
        for seq, tokens in enumerate(group):
            for pos, token in enumerate(tokens):
                batch.token[k] = token
                batch.pos[k] = pos
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = seq
                batch.logits[k] = True
                k += 1
        batch.n_tokens = k
        native.L.llama_memory_clear(self.ctx.mem, True)
        rc = (native.L.llama_encode if self.encoder else native.L.llama_decode)(self.ctx.ctx, batch)
        if rc != 0:
            raise NativeError(_("llama.cpp could not embed this batch (code {rc})", rc=rc))
        n_embd = self.model.n_embd
        out = []
        for seq in range(len(group)):
            ptr = native.L.llama_get_embeddings_seq(self.ctx.ctx, seq)
            if not ptr:
                raise NativeError(_("llama.cpp returned no embedding"))
            values = ptr[:n_embd]
            norm = math.sqrt(sum(v * v for v in values)) or 1.0
            out.append(tuple(v / norm for v in values))
        return out
