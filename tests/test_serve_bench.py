"""`lmdesk bench serve` and `--against URL` run end to end and print their ratios; no figure
is asserted (benchmarks print ratios; tests only check that they are measured)."""

from __future__ import annotations

import multiprocessing
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, LoadParams
from tui.serve import ApiServer, EnginePool
from tui.serve.bench import run_serve_bench
from tui.serve.bench_against import AgainstError, run_against_bench


def test_serve_bench_prints_the_api_schema_and_embedding_lines(smollm: Path) -> None:
    lines: list[str] = []
    results = run_serve_bench(LoadParams(model_path=str(smollm), n_ctx=1024), lines.append,
                              reps=1, max_tokens=8, clients=2, duration_s=1.0,
                              client_tokens=4, embed_texts=20)
    text = "\n".join(lines)
    assert re.search(r"API/engine generation tokens/s = \d+\.\d{3}", text), text
    assert re.search(r"^schema     ", text, re.M) and re.search(r"^embed      ", text, re.M)
    assert results["concurrent_failures"] == 0


def test_against_another_server_prints_the_ratios(smollm: Path,
                                                  smollm_engine: LocalEngine) -> None:
    pool = EnginePool()
    pool.register("other-smollm", smollm_engine)
    lines: list[str] = []
    with ApiServer(pool, "127.0.0.1", 0) as other:
        results = run_against_bench(LoadParams(model_path=str(smollm), n_ctx=1024),
                                    other.url, lines.append, reps=1, max_tokens=8,
                                    history_tokens=300)
    text = "\n".join(lines)
    assert "model other-smollm" in text
    assert re.search(r"^ratio      lmdesk/other generation tokens/s = \d+\.\d{3}, time to first "
                     r"token = \d+\.\d{3}", text, re.M), text
    assert re.search(r"^history    the same after a \d+-token conversation", text, re.M), text
    assert re.search(r"^ratio      after the conversation, lmdesk/other generation tokens/s = "
                     r"\d+\.\d{3}", text, re.M), text
    assert results["lmdesk_gen_tps"] > 0 and results["other_gen_tps"] > 0
    assert results["history_tokens"] >= 300 and results["history_lmdesk_gen_tps"] > 0


def test_against_every_run_asks_prompts_new_to_both_servers(
        smollm: Path, smollm_engine: LocalEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that keeps earlier prompts' states (llama-server's prompt cache) must not meet
    a prompt it saw in an earlier run: its time to first token would measure its memory."""
    asked: list[str] = []
    generate = smollm_engine.generate

    def recording(messages: Sequence[ChatMessage], *args: Any, **kwargs: Any) -> Any:
        asked.append(messages[-1].content)
        return generate(messages, *args, **kwargs)

    monkeypatch.setattr(smollm_engine, "generate", recording)
    pool = EnginePool()
    pool.register("other-smollm", smollm_engine)
    runs: list[set[str]] = []
    with ApiServer(pool, "127.0.0.1", 0) as other:
        for _ in range(2):
            asked.clear()
            run_against_bench(LoadParams(model_path=str(smollm), n_ctx=1024), other.url,
                              lambda _line: None, reps=2, max_tokens=4, history_tokens=0)
            runs.append(set(asked))
    assert all(len(run) == 3 for run in runs), runs  # the warm-up and two counted, all apart
    assert not runs[0] & runs[1], runs


@pytest.mark.parametrize("kept", [68, 4_000_000], ids=["no-header", "cut-short"])
def test_against_a_model_lmdesk_cannot_load_is_one_line(tmp_path: Path, smollm: Path,
                                                        kept: int) -> None:
    """A damaged model (an unreadable header, or a file cut short) is one line, said before
    the other server is asked anything, and no lmdesk serve process is left running."""
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(smollm.read_bytes()[:kept])
    with pytest.raises(AgainstError) as caught:  # nothing listens on the discard port
        run_against_bench(LoadParams(model_path=str(damaged), n_ctx=1024),
                          "http://127.0.0.1:9/v1", lambda _line: None, reps=1, max_tokens=4,
                          history_tokens=0)
    assert str(caught.value).startswith("lmdesk serve could not load the model: ")
    assert "\n" not in str(caught.value)
    assert not [p for p in multiprocessing.active_children() if p.name == "lmdesk-bench-serve"]


def test_against_a_url_that_is_not_http_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "bench", "serve", "--against", "ftp://host/v1"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip() == ("lmdesk: error: --against needs an http:// URL of an "
                                     "OpenAI-compatible server, got 'ftp://host/v1'")
