"""Moved to `arawn_core.staleness` (listing uses it without importing this package); kept for imports."""

from __future__ import annotations

from arawn_core.staleness import VERBATIM_MODEL, is_stale, stale_fields  # noqa: F401
