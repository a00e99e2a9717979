"""Every bad input gives a one-line message naming the problem, and leaves no worker behind."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import psutil
import pytest

from tui.engine.errors import InvalidParameter, ModelLoadError
from tui.engine.gguf import read_header
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams


def _children() -> set[int]:
    """Spawned workers (not multiprocessing's resource tracker, which lives as long as we do)."""
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(proc.cmdline()):
                found.add(proc.pid)
        except psutil.Error:
            pass
    return found


def _assert_load_fails(path: Path, *words: str) -> str:
    before = _children()
    engine = LocalEngine(LoadParams(model_path=str(path), n_ctx=256))
    with pytest.raises(ModelLoadError) as caught:
        engine.load()
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert not engine.alive
    assert _children() <= before, "a half-loaded worker was left behind"
    return message


def test_missing_path(tmp_path: Path) -> None:
    _assert_load_fails(tmp_path / "nope.gguf", "no such file", "nope.gguf")


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("these are my notes, not a model\n" * 10)
    _assert_load_fails(path, "not a GGUF model file")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    _assert_load_fails(path, "empty file")


def test_truncated_gguf(tmp_path: Path, smollm: Path) -> None:
    path = tmp_path / "half.gguf"
    with smollm.open("rb") as src, path.open("wb") as dst:
        dst.write(src.read(smollm.stat().st_size // 2))
    _assert_load_fails(path, "truncated", "fetch the file again")


def test_truncated_inside_the_header(tmp_path: Path, smollm: Path) -> None:
    path = tmp_path / "stub.gguf"
    with smollm.open("rb") as src, path.open("wb") as dst:
        dst.write(src.read(4096))
    _assert_load_fails(path, "truncated")


def test_damaged_tensor_data_is_caught_by_llama_cpp_not_by_a_crash(
    tmp_path: Path, smollm: Path
) -> None:
    """A header that passes our checks but lies about a tensor: the worker reports or dies,
    and either way the caller gets one clear line."""
    path = tmp_path / "lying.gguf"
    shutil.copy(smollm, path)
    table = path.read_bytes()[: read_header(smollm).data_offset]
    marker = b"token_embd.weight"
    at = table.rfind(marker)  # its entry in the tensor table, after the metadata
    assert at > 0
    type_pos = at + len(marker) + 4 + 8 * 2  # n_dims u32, two u64 dims, then the type
    with path.open("r+b") as fh:  # an unknown tensor type id
        fh.seek(type_pos)
        fh.write((99).to_bytes(4, "little"))
    message = _assert_load_fails(path, "lying.gguf")
    assert "llama.cpp could not load" in message or "crashed while loading" in message


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (LoadParams(model_path="m.gguf", n_ctx=-5), "n_ctx must be at least"),
        (LoadParams(model_path="m.gguf", n_threads=0), "n_threads must be at least"),
        (LoadParams(model_path=""), "model path is empty"),
    ],
)
def test_invalid_load_parameters(params: LoadParams, needle: str) -> None:
    with pytest.raises(InvalidParameter, match=needle):
        LocalEngine(params).load()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"temperature": "hot"}, "temperature must be a number, got 'hot'"),
        ({"top_p": 1.5}, "top_p must be between"),
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"top_k": 2.5}, "top_k must be a whole number"),
    ],
)
def test_invalid_sampling_parameters(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidParameter, match=needle):
        SamplingParams(**kwargs).validate()  # type: ignore[arg-type]


def test_prompt_longer_than_the_context(smollm: Path) -> None:
    with LocalEngine(LoadParams(model_path=str(smollm), n_ctx=128)) as engine:
        long_prompt = "word " * 400
        events = list(engine.generate([ChatMessage("user", long_prompt)], SamplingParams()))
        done = events[-1]
        assert isinstance(done, Done)
        assert done.stats.stop_reason == "error"
        assert engine.info is not None and engine.info.n_ctx == 256  # padded like llama.cpp
        assert done.error is not None and "context window holds 256" in done.error
        # the model is still there for a prompt that fits
        events = list(engine.generate([ChatMessage("user", "Hi")], SamplingParams(max_tokens=4)))
        assert isinstance(events[-1], Done) and events[-1].error is None


def test_worker_killed_mid_generation(smollm: Path) -> None:
    before = _children()
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=512))
    info = engine.load()
    texts: list[str] = []
    done: Done | None = None
    sampling = SamplingParams(max_tokens=400, seed=2)
    for event in engine.generate([ChatMessage("user", "Tell me a long story.")], sampling):
        if isinstance(event, Done):
            done = event
            break
        texts.append(event.text)
        if len(texts) == 5:
            threading.Thread(target=os.kill, args=(info.worker_pid, signal.SIGKILL)).start()
    assert done is not None
    assert done.stats.stop_reason == "error"
    assert done.error is not None and "worker died" in done.error and "SIGKILL" in done.error
    assert done.text == "".join(texts)  # the partial reply is kept
    assert not engine.alive
    assert _children() <= before
    # the caller goes on: the same engine can load again
    engine.load()
    events = list(engine.generate([ChatMessage("user", "Hi")], SamplingParams(max_tokens=4)))
    assert isinstance(events[-1], Done) and events[-1].error is None
    engine.unload()


def test_generate_before_load_is_a_clear_error() -> None:
    engine = LocalEngine(LoadParams(model_path="x.gguf"))
    events = list(engine.generate([ChatMessage("user", "Hi")], SamplingParams()))
    assert isinstance(events[-1], Done)
    assert events[-1].error is not None and "no model is loaded" in events[-1].error


def test_two_loads_asked_at_once_start_one_worker(smollm: Path) -> None:
    before = _children()
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=256))
    results: list[int] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            results.append(engine.load().worker_pid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert errors == []
        assert len(results) == 2 and results[0] == results[1]
        assert len(_children() - before) == 1, "one worker for the two loads"
    finally:
        engine.unload()
    assert _children() <= before


def test_lone_surrogates_and_non_utf8_never_crash_the_worker(smollm_engine: LocalEngine) -> None:
    """``printf 'R\\xe9sum\\xe9' | lmdesk ask`` reads as surrogate escapes; JSON can carry a
    lone surrogate: the worker answers, and no message echoes the text."""
    odd = "R\udce9sum\udce9 and a lone \ud800 surrogate"
    for messages, raw in (([ChatMessage("system", odd), ChatMessage("user", odd)], None),
                          ([], odd)):
        events = list(smollm_engine.generate(messages, SamplingParams(max_tokens=4, seed=1),
                                             raw_prompt=raw))
        done = events[-1]
        assert isinstance(done, Done) and done.error is None, done.error
    assert smollm_engine.count_tokens(odd) > 0
    assert smollm_engine.count_tokens(messages=[ChatMessage("user", odd)]) > 0
    assert smollm_engine.alive


def test_an_n_ctx_beyond_training_is_refused_with_the_memory_it_needs(smollm: Path) -> None:
    with pytest.raises(InvalidParameter) as caught:
        LocalEngine(LoadParams(model_path=str(smollm), n_ctx=10_000_000_000)).load()
    message = str(caught.value)
    assert "\n" not in message
    assert "trained on" in message and "8,192" in message and "GiB" in message
    assert "allow_ctx_beyond_train" in message
    with pytest.raises(InvalidParameter, match="at most"):  # forced, it still must fit llama.cpp
        LocalEngine(LoadParams(model_path=str(smollm), n_ctx=10_000_000_000,
                               allow_ctx_beyond_train=True)).load()
    forced = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=8300,
                                    allow_ctx_beyond_train=True))
    try:
        assert forced.load().n_ctx == 8448  # padded to 256 like llama.cpp
    finally:
        forced.unload()


def test_a_fifo_is_not_a_model_file(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    message = _assert_load_fails(fifo, "FIFO", "not a regular file")
    assert "download" not in message


def test_an_empty_worker_log_is_gone_when_the_process_exits(smollm: Path, tmp_path: Path
                                                           ) -> None:
    # each process's workers share one log in the cache folder (or the temporary folder);
    # when llama.cpp wrote nothing to it, nothing is left behind once the process exits
    import subprocess
    import sys

    cache = tmp_path / "cache"
    script = (
        "from tui.engine.local import LocalEngine\n"
        "from tui.engine.protocol import LoadParams\n"
        f"with LocalEngine(LoadParams(model_path={str(smollm)!r}, n_ctx=256)) as e:\n"
        "    print(e.log_path)\n")
    env = {**os.environ, "LMDESK_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    log = Path(done.stdout.strip())
    assert log.parent == cache
    assert cache.is_dir() and not log.exists()
