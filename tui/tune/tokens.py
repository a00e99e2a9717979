"""Pairs as tokens, in the base model's own chat template, with llama.cpp's own tokenizer.

The prompt is formatted and tokenized exactly as the model worker does it at inference
(``tui/engine/worker.py``: the GGUF's Jinja template through llama-cpp-python's formatter,
then ``Llama.tokenize``), so the tuned model is trained on the very tokens it will later see.
The response tokens are what the template adds after that prompt for the assistant's turn,
its end-of-turn token included: the loss is taken on those only. Runs in the training
process (it imports llama_cpp).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tui.engine.protocol import ChatMessage
from tui.i18n import _
from tui.tune.errors import TuneError
from tui.tune.pairs import Pair


@dataclass(frozen=True)
class Example:
    """One pair as token ids: ``ids[:n_prompt]`` is the prompt, the rest the response."""

    ids: tuple[int, ...]
    n_prompt: int

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.n_prompt


def _messages(pair: Pair) -> list[dict[str, str]]:
    out = [{"role": "system", "content": pair.system}] if pair.system else []
    return [*out, {"role": "user", "content": pair.instruction}]


class ChatTokenizer:
    """The base model's vocabulary (llama.cpp, vocab only) and chat template."""

    def __init__(self, base_path: str) -> None:
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise TuneError(_("llama-cpp-python is missing ({exc}): run scripts/install",
                              exc=exc)) from None
        try:
            self.llm: Any = llama_cpp.Llama(model_path=base_path, vocab_only=True, verbose=False)
        except Exception as exc:  # llama_cpp raises ValueError and friends
            raise TuneError(_("llama.cpp cannot read the base model {base_path} ({exc})",
                              base_path=base_path, exc=exc)) from None
        meta = dict(self.llm.metadata)
        self.eos = int(self.llm.token_eos())
        self.n_ctx_train = int(self.llm._model.n_ctx_train())
        template = meta.get("tokenizer.chat_template") or None
        self.prompt_formatter: Any = None
        self.full_formatter: Any = None
        if template:
            vocab = self.llm._model
            tokens: dict[str, Any] = {"eos_token": vocab.token_get_text(self.eos),
                      "bos_token": vocab.token_get_text(self.llm.token_bos()),
                      "stop_token_ids": [self.eos]}
            self.prompt_formatter = Jinja2ChatFormatter(template=template, **tokens)
            self.full_formatter = Jinja2ChatFormatter(template=template,
                                                      add_generation_prompt=False, **tokens)

    def example(self, pair: Pair) -> Example:
        if self.prompt_formatter is None:
            return self._plain(pair)
        messages = _messages(pair)
        prompt = self.prompt_formatter(messages=messages)
        full = self.full_formatter(
            messages=[*messages, {"role": "assistant", "content": pair.response}])
        prompt_ids = self.llm.tokenize(prompt.prompt.encode("utf-8"),
                                       add_bos=not prompt.added_special, special=True)
        if full.prompt.startswith(prompt.prompt) and len(full.prompt) > len(prompt.prompt):
            rest = full.prompt[len(prompt.prompt):]
            response_ids = list(self.llm.tokenize(rest.encode("utf-8"), add_bos=False,
                                                  special=True))
        else:  # a template that rewrites earlier turns once an answer follows
            response_ids = list(self.llm.tokenize(pair.response.encode("utf-8"), add_bos=False,
                                                  special=False))
        if self.eos not in response_ids:
            response_ids.append(self.eos)
        return Example((*prompt_ids, *response_ids), len(prompt_ids))

    def _plain(self, pair: Pair) -> Example:
        """A base model without a chat template: the worker's plain transcript."""
        from tui.engine.chat_prompt import plain_transcript

        messages = tuple(ChatMessage(m["role"], m["content"])  # type: ignore[arg-type]
                         for m in _messages(pair))
        text, _spans = plain_transcript(messages)
        prompt_ids = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        sep = "\n" if len(messages) == 1 else " "
        response_ids = list(self.llm.tokenize((sep + pair.response).encode("utf-8"),
                                              add_bos=False, special=False))
        return Example((*prompt_ids, *response_ids, self.eos), len(prompt_ids))

    def close(self) -> None:
        self.llm = None
