"""Token ids back to text with the GGUF's own vocabulary (``/v1/embeddings`` token arrays), on
both packaged models: byte-level BPE (SmolLM2) and SentencePiece (Gemma 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.serve.vocab import VocabError, vocabulary

TEXTS = ["Hello world, café — 日本語 ok!", " leading space  and\nnewlines", "emoji 🙂 <b>x</b>"]


@pytest.mark.parametrize("which", ["smollm", "gemma"])
def test_decoding_gives_the_text_back(which: str, request: pytest.FixtureRequest) -> None:
    from llama_cpp import Llama

    path: Path = request.getfixturevalue(which)
    vocab = vocabulary(str(path))
    tokenizer = Llama(str(path), vocab_only=True, verbose=False)
    for text in TEXTS:
        ids = tokenizer.tokenize(text.encode(), add_bos=False, special=False)
        assert vocab.decode(ids) == text
    marked = tokenizer.tokenize(b"<|im_start|>hi" if which == "smollm" else b"<start_of_turn>hi",
                                add_bos=False, special=True)
    assert vocab.decode(marked) == "hi"  # control tokens are markup, not text
    with pytest.raises(VocabError, match="not in this model's vocabulary"):
        vocab.decode([len(vocab.tokens)])


def test_a_file_that_is_not_gguf_is_a_vocab_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(VocabError):
        vocabulary(str(bad))
