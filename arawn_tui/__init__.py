"""The arawn terminal UI: a Textual app over `arawn_core.ArawnCore`.

Build it with `arawn_tui.factory.create_app(settings, backend)`. Importing this
package changes nothing process-wide; `arawn` itself (`arawn_tui.__main__`)
tunes the frame rate and the garbage collector for the app it runs.
"""
