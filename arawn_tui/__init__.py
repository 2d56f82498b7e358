"""The arawn terminal UI: a Textual app over `arawn_core.ArawnCore`.

Build it with `arawn_tui.factory.create_app(settings, backend)`.
"""

import os

# Textual paints at most TEXTUAL_FPS frames a second (default 60), and a key's change
# reaches the terminal only with the next frame tick, often the one after (the widget,
# then the screen, each settle first). At 120 a key shows about twice as soon; frames
# are only painted when something changed, so an idle app costs nothing more. Read by
# Textual when it is first imported (hence here, before any of our modules import it);
# a value the user set wins.
os.environ.setdefault("TEXTUAL_FPS", "120")
