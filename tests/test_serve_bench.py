"""`lmdesk bench serve` and `--against URL` run end to end and print their ratios; no figure
is asserted (benchmarks print ratios; tests only check that they are measured)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tui.engine.local import LocalEngine
from tui.engine.protocol import LoadParams
from tui.serve import ApiServer, EnginePool
from tui.serve.bench import run_serve_bench
from tui.serve.bench_against import run_against_bench


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


def test_against_a_url_that_is_not_http_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "bench", "serve", "--against", "ftp://host/v1"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip() == ("lmdesk: error: --against needs an http:// URL of an "
                                     "OpenAI-compatible server, got 'ftp://host/v1'")
