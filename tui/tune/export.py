"""Write LoRA weights as a llama.cpp GGUF adapter (what ``LoadParams.lora_path`` loads).

llama.cpp's loader (src/llama-adapter.cpp) wants ``general.type = adapter``, ``adapter.type =
lora``, ``adapter.lora.alpha``, the base model's ``general.architecture``, and for each base
tensor ``<gguf name>.lora_a`` of shape (rank, in) and ``<gguf name>.lora_b`` of shape
(out, rank) in numpy order, the same layout as peft's ``lora_A``/``lora_B`` weights. It scales
the product by alpha / rank, as peft does.

The llama converter permutes the rows of ``attn_q``/``attn_k`` for its rotary embedding
(convert_hf_to_gguf's ``LlamaModel.permute``) and transformers undoes it when it reads a GGUF,
so the B matrices of those two are permuted back here, as convert_lora_to_gguf.py does.
Needs numpy and gguf (the ``tune`` extra); imported by the training process only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.i18n import _
from tui.tune.errors import TuneError

PERMUTED_ARCHS = frozenset({"llama"})


@dataclass(frozen=True)
class LoraWeights:
    """One adapted matrix: its Hugging Face module name and peft's A (r, in), B (out, r)."""

    module: str
    a: Any
    b: Any


def llama_permute(weights: Any, n_head: int, n_head_kv: int | None) -> Any:
    """convert_hf_to_gguf's permutation of q/k rows (applies to a LoRA B the same way)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def gguf_tensor_name(arch: str, n_layers: int, module: str) -> str:
    """``model.layers.3.self_attn.q_proj`` -> ``blk.3.attn_q.weight`` for ``arch``."""
    import gguf

    by_name = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in by_name:
        raise TuneError(_("gguf does not know the architecture {arch!r}", arch=arch))
    names = gguf.get_tensor_name_map(by_name[arch], n_layers)
    mapped = names.get_name(module + ".weight", try_suffixes=(".weight",))
    if mapped is None:
        raise TuneError(_("no llama.cpp tensor name for {module!r} ({arch})",
                          module=module, arch=arch))
    return str(mapped)


def write_lora_gguf(
    path: str | os.PathLike[str], weights: list[LoraWeights], *, arch: str, n_layers: int,
    n_head: int, n_head_kv: int, alpha: float, name: str,
    extra: Mapping[str, str] | None = None,
) -> int:
    """Write the adapter (atomically: a temp file then rename); returns the tensor count."""
    import gguf
    import numpy as np

    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.General.NAME, name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for key, value in (extra or {}).items():
        writer.add_string(key, value)
    count = 0
    for w in sorted(weights, key=lambda w: w.module):
        base = gguf_tensor_name(arch, n_layers, w.module)
        a = np.ascontiguousarray(w.a, dtype=np.float32)
        b = np.asarray(w.b, dtype=np.float32)
        if arch in PERMUTED_ARCHS and base.endswith((".attn_q.weight", ".attn_k.weight")):
            kv = n_head if ".attn_q." in base else n_head_kv
            b = llama_permute(b, n_head, kv)
        writer.add_tensor(base + ".lora_a", a)
        writer.add_tensor(base + ".lora_b", np.ascontiguousarray(b))
        count += 2
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TuneError(_("cannot write the adapter {target} ({strerror})",
                          target=target, strerror=exc.strerror)) from None
    return count
