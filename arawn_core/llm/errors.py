"""Errors a backend raises, each carrying what the user needs to act.

Defined in `arawn_core.errors` (one hierarchy, with exit codes); kept importable from here.
"""

from __future__ import annotations

from arawn_core.errors import (  # noqa: F401  (re-exported)
    BackendError,
    BackendUnavailable,
    ContextOverflow,
    LLMError,
    LLMTimeout,
    ModelNotFound,
)

__all__ = ["BackendError", "BackendUnavailable", "ContextOverflow", "LLMError", "LLMTimeout", "ModelNotFound"]
