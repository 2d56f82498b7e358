"""The cyclic garbage collector during start-up, and after it.

Building the first screen allocates a few hundred thousand objects (Textual's
imports, the widgets, a thousand workstream rows), and the collector keeps
walking all of them: start-up pays for several full collections, and later
every full collection (about 50 ms, at random moments: a key typed then waits)
walks them all again, though they live as long as the app. So the collector is
paused until the first screen is painted, then everything built so far is
frozen (`gc.freeze`: left out of later collections) and collection resumes,
with full collections made rarer (FULL_COLLECTION_EVERY).
Reference counting frees non-cyclic garbage all along. The app releases it all
when it closes (several apps in one process, as in the tests, each start afresh).
No Textual import here: `arawn_tui.__main__` pauses before it imports the app.
"""

from __future__ import annotations

import gc

_paused = False
_thresholds: tuple[int, int, int] | None = None  # what they were before `freeze_and_resume`
# A full collection still walks whatever was built after start-up (caches of rendered
# lines, loaded transcripts: ~30 ms with a thousand workstreams), and by default one runs
# every 10 collections of the middle generation, every second or so while the screen
# changes. Ten times rarer; young garbage is collected as often as before.
FULL_COLLECTION_EVERY = 100


def pause() -> None:
    """Stop automatic collection until `freeze_and_resume` (a no-op if already stopped by someone else)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def freeze_and_resume() -> None:
    """Move every object alive now out of the collector's sight, make full collections rarer, and
    collect automatically again if we paused it."""
    global _paused, _thresholds
    gc.freeze()
    if _thresholds is None:
        _thresholds = gc.get_threshold()
        young, middle, full = _thresholds
        gc.set_threshold(young, middle, max(full, FULL_COLLECTION_EVERY))
    if _paused:
        _paused = False
        gc.enable()


def release() -> None:
    """The app is going away: what was frozen may be collected again (and collection resumes)."""
    global _paused, _thresholds
    gc.unfreeze()
    if _thresholds is not None:
        gc.set_threshold(*_thresholds)
        _thresholds = None
    if _paused:
        _paused = False
        gc.enable()
