"""Fine-tuning: train a LoRA adapter on instruction/response pairs, offline, on the CPU.

The training packages (PyTorch, transformers, peft, gguf) are an optional extra
(``pip install 'lmdesk[tune]'``); nothing here imports them at module level. Training runs in
its own spawned process (``tui/tune/job.py``), like every model, and the result is a llama.cpp
GGUF LoRA adapter applied at load over the quantised base, registered as a model profile.
No Textual here.
"""

from tui.tune.errors import TuneError

__all__ = ["TuneError"]
