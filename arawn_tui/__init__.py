"""The arawn terminal UI: a Textual app over `arawn_core.ArawnCore`.

Build it with `arawn_tui.factory.create_app(settings, backend)`.
"""
