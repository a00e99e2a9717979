"""The verdict (memory AND speed) at its boundaries, the automatic context, and the right
quantization of a catalogue model for a machine."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import pytest

from tui.models.catalogue import find_entry
from tui.models.choice import (
    KV_Q8_0_BYTES,
    QuantOption,
    assess,
    best_option,
    choose_n_ctx,
    choose_quantization,
    combined_verdict,
    context_candidates,
    quant_rank,
)
from tui.models.fit import MiB, Resources, estimate_fit, shape_of
from tui.models.speed import MachineSpeed, SpeedModel

GiB = 1 << 30
TWO_CORES = SpeedModel(MachineSpeed(bandwidth_gb_s=31.0, gflops=70.0, threads=2))
FAST = SpeedModel(MachineSpeed(bandwidth_gb_s=400.0, gflops=20000.0, threads=32))


@pytest.mark.parametrize(("memory", "tok_s", "expected"), [
    ("green", 8.0, "green"),      # exactly the reading speed is enough
    ("green", 7.999, "amber"),    # just under it is slow
    ("green", 80.0, "green"),
    ("amber", 80.0, "amber"),     # tight memory stays amber however fast
    ("amber", 1.0, "amber"),
    ("red", 80.0, "red"),         # does not fit, whatever the speed
    ("red", 0.0, "red"),
    ("green", 0.0, "amber"),
])
def test_combined_verdict(memory: str, tok_s: float, expected: str) -> None:
    assert combined_verdict(memory, tok_s) == expected  # type: ignore[arg-type]


def test_reading_speed_is_a_setting() -> None:
    assert combined_verdict("green", 12.0, reading_speed=15.0) == "amber"
    assert combined_verdict("green", 15.0, reading_speed=15.0) == "green"


def test_memory_boundaries_of_the_verdict(smollm: Path) -> None:
    """At n_ctx 2048: green needs the estimate plus the peak plus a 256 MiB margin; one byte
    less is amber; the estimate alone still loads (amber); one byte under it is red."""
    shape = shape_of(smollm)
    need = estimate_fit(shape, n_ctx=2048, resources=Resources(20 * GiB, 24 * GiB))
    ram = need.ram_bytes - need.reclaimable_bytes
    margin = 256 * MiB  # max(256 MiB, 5% of a 4 GiB machine)

    def verdict(available: int) -> str:
        a = assess(shape, Resources(available, 4 * GiB), FAST, n_ctx=2048)
        assert a.speed.tok_s > 8  # speed never decides here
        return a.verdict

    top = ram + need.peak_extra_bytes + margin
    assert verdict(top) == "green"
    assert verdict(top - 1) == "amber"
    assert verdict(ram) == "amber"
    assert verdict(ram - 1) == "red"


def test_speed_boundary_of_the_verdict(smollm: Path) -> None:
    shape = shape_of(smollm)
    plenty = Resources(20 * GiB, 24 * GiB)
    rate = assess(shape, plenty, TWO_CORES, n_ctx=2048).speed.tok_s
    assert assess(shape, plenty, TWO_CORES, n_ctx=2048, reading_speed=rate).verdict == "green"
    slow = assess(shape, plenty, TWO_CORES, n_ctx=2048, reading_speed=rate * 1.001)
    assert slow.verdict == "amber" and "slower than reading speed" in slow.reason
    assert "but slow" in slow.line()


def test_the_context_is_the_largest_that_fits_with_margin() -> None:
    entry = find_entry("llama-3.1-8b-instruct")  # trained on 128k; 128 KiB of KV per token
    assert entry is not None
    shape = entry.shape("Q4_K_M")
    assert context_candidates(131072) == [131072, 32768, 16384, 8192, 4096]
    assert context_candidates(2048) == [2048]
    # the figures below are without flash attention (its attention scores need a buffer)
    choose = functools.partial(choose_n_ctx, flash_attn=False)
    roomy = choose(shape, Resources(120 * GiB, 128 * GiB))
    assert roomy.n_ctx == 131072 and "trained context fits" in roomy.reason
    mid = choose(shape, Resources(10 * GiB, 16 * GiB))
    assert mid.n_ctx == 16384 and mid.fit.verdict == "green"
    assert "the largest of 128k, 32k, 16k, 8k, 4k" in mid.reason
    # one step up would not have fitted with margin
    up = [c for c in context_candidates(131072) if c > mid.n_ctx][-1]
    assert estimate_fit(shape, n_ctx=up, resources=Resources(10 * GiB, 16 * GiB),
                        flash_attn=False).verdict != "green"
    # nothing fits with margin: the largest that fits at all, said to be tight
    tight = choose(shape, Resources(6 * GiB, 8 * GiB))
    assert tight.fit.verdict == "amber" and tight.n_ctx == 8192
    assert "nothing from 128k, 32k, 16k, 8k, 4k fits with margin; 8k fits, tight" in tight.reason
    tighter = choose(shape, Resources(5 * GiB, 8 * GiB))
    assert tighter.n_ctx < 4096 and tighter.fit.verdict == "amber"  # below 4k only now
    none = choose(shape, Resources(2 * GiB, 4 * GiB))
    assert none.fit.verdict == "red" and none.reason.startswith("does not fit even at")
    asked = choose(shape, Resources(10 * GiB, 16 * GiB), requested=8192)
    assert asked.n_ctx == 8192 and not asked.chosen_automatically and "as set" in asked.reason
    # flash attention on (the default) has no scores buffer: the next step up fits there
    assert choose_n_ctx(shape, Resources(10 * GiB, 16 * GiB)).n_ctx == 32768


def test_a_q8_0_kv_cache_is_offered_when_it_buys_a_larger_context() -> None:
    entry = find_entry("llama-2-13b-chat")  # no grouped-query attention: a big KV cache
    assert entry is not None
    shape = replace(entry.shape("Q4_K_M"), context_length=32768)
    for gib in (10, 11, 12, 13, 14, 16):
        choice = choose_n_ctx(shape, Resources(gib * GiB, 32 * GiB))
        if choice.q8_0_n_ctx:
            break
    else:
        pytest.fail("no memory size where a q8_0 cache buys more context")
    assert choice.q8_0_n_ctx > choice.n_ctx
    assert f"a q8_0 KV cache would allow {choice.q8_0_n_ctx // 1024}k" in choice.reason
    q8 = estimate_fit(shape, n_ctx=choice.q8_0_n_ctx, resources=Resources(gib * GiB, 32 * GiB),
                      kv_type_bytes=KV_Q8_0_BYTES)
    assert q8.verdict == "green"
    plenty = choose_n_ctx(shape, Resources(120 * GiB, 128 * GiB))
    assert plenty.q8_0_n_ctx == 0 and "q8_0" not in plenty.reason  # f16 fits the most already


def test_the_best_quantization_is_the_most_faithful_green_one() -> None:
    entry = find_entry("qwen3-8b")
    assert entry is not None
    fast = choose_quantization(entry, Resources(100 * GiB, 128 * GiB), FAST)
    assert fast.best is not None and fast.best.quantization == "Q8_0"
    ranks = [quant_rank(o.quantization) for o in fast.options]
    assert ranks == sorted(ranks)  # the table runs Q8_0 ... Q3_K_M
    # little memory: the larger files are red, the best is the largest that is still green
    small = choose_quantization(entry, Resources(7 * GiB, 8 * GiB), FAST)
    verdicts = {o.quantization: o.assessment.verdict for o in small.options}
    assert verdicts["Q8_0"] == "red" and small.best is not None
    assert small.best.assessment.verdict == "green"
    assert all(verdicts[o.quantization] != "green" for o in small.options
               if quant_rank(o.quantization) < quant_rank(small.best.quantization))
    line = small.best.line()
    assert line.startswith(f"{small.best.quantization} fits with ") and " tok/s" in line


def test_when_nothing_is_green_the_fastest_that_fits_is_suggested() -> None:
    entry = find_entry("qwen3-14b")
    assert entry is not None
    slow = choose_quantization(entry, Resources(20 * GiB, 24 * GiB), TWO_CORES)
    assert all(o.assessment.verdict != "green" for o in slow.options)
    assert slow.best is not None
    assert slow.best.assessment.tok_s == max(o.assessment.tok_s for o in slow.options
                                             if o.assessment.verdict != "red")
    nothing = choose_quantization(entry, Resources(GiB, 2 * GiB), TWO_CORES)
    assert nothing.best is None and nothing.line().startswith("does not fit, even at")
    assert best_option([]) is None


def test_a_catalogue_entry_with_no_gguf_has_no_choice() -> None:
    entry = find_entry("gpt-j-6b")
    assert entry is not None and not entry.has_files
    choice = choose_quantization(entry, Resources(20 * GiB, 24 * GiB), TWO_CORES)
    assert choice.best is None and choice.line() == "no GGUF file listed"


def test_quant_option_line() -> None:
    entry = find_entry("qwen3-4b")
    assert entry is not None
    a = assess(entry.shape("Q5_K_M"), Resources(20 * GiB, 24 * GiB), FAST, n_ctx=16384)
    option = QuantOption("Q5_K_M", "x.gguf", 1, a)
    assert option.line() == f"Q5_K_M fits with 16k at {a.speed.tok_s:.0f} tok/s"
