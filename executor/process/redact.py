"""Masking secret values (HF_TOKEN, WANDB_API_KEY, ...) in a child's output: in raw bytes (also
when a value is split across reads), in text, in parser events and in error messages.

Standard library only and no imports from the pack, relative ones included: the detached job
wrapper (``jobwrapper.py``) runs with musubi-tuner's own interpreter and loads this file by path,
so a background run's log is masked exactly as a foreground run's.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

__all__ = ["Redactor", "secret_values", "is_secret_name", "MIN_SECRET_CHARS"]

MIN_SECRET_CHARS = 8
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """True for environment variable names that hold credentials (HF_TOKEN, WANDB_API_KEY, ...)."""
    return bool(_SECRET_NAME.search(name))


def secret_values(env: Any) -> list[str]:
    """Values of the child's secret-looking variables (HF_TOKEN, WANDB_API_KEY, *SECRET*, ...),
    ComfyUI's own included: whatever the trainer prints of them must not reach the log, the
    events or an error message. Short values are left alone (they would blank out ordinary words)."""
    return sorted({str(v) for k, v in dict(env or {}).items()
                   if is_secret_name(str(k)) and len(str(v)) >= MIN_SECRET_CHARS}, key=len, reverse=True)


class Redactor:
    """Replaces secret values with ``***`` in text, events and the raw bytes of each stream.

    The bytes of one stream arrive in chunks, so a chunk's end that could be the start of a
    secret is held back until the next chunk (or the end) decides it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self.values = list(secrets)
        self._raw = [(s.encode("utf-8", "surrogateescape"), b"***") for s in self.values]
        self._carry: dict[str, bytes] = {}

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        for secret in self.values:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def feed(self, stream: str, data: bytes) -> bytes:
        if not self._raw:
            return data
        data = self._carry.pop(stream, b"") + data
        for secret, mask in self._raw:
            data = data.replace(secret, mask)
        hold = 0
        for secret, _ in self._raw:
            for size in range(min(len(secret) - 1, len(data)), hold, -1):
                if data.endswith(secret[:size]):
                    hold = size
                    break
        if hold:
            self._carry[stream], data = data[-hold:], data[:-hold]
        return data

    def flush(self) -> bytes:
        rest, self._carry = b"".join(self._carry.values()), {}
        return rest

    def event(self, event: Any) -> Any:
        if not self.values:
            return event
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            if isinstance(value, str) and self.text(value) != value:
                changes[f.name] = self.text(value)
            elif isinstance(value, dict) and any(isinstance(v, str) and self.text(v) != v for v in value.values()):
                changes[f.name] = {k: self.text(v) if isinstance(v, str) else v for k, v in value.items()}
        return dataclasses.replace(event, **changes) if changes else event

    def scrub(self, error: Any) -> None:
        """The error's message and hint (built from the parser's unredacted lines)."""
        if self.values:
            error.message, error.hint = self.text(error.message), self.text(error.hint)
            error.args = (error.message,)
            if error.result.failure_hint:
                error.result.failure_hint = self.text(error.result.failure_hint)
