"""The one error type of fine-tuning: its message is the line the user reads."""

from __future__ import annotations


class TuneError(Exception):
    """Bad input or a failed run; ``str()`` says what is wrong and what to do."""


class ExtraMissing(TuneError):
    """The optional training packages are not installed."""


INSTALL_COMMAND = "pip install 'lmdesk[tune]'"
TRAINING_PACKAGES = ("torch", "transformers", "peft", "gguf")
