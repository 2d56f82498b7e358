"""arawn's engine: workstreams, sessions, compression. Never imports Textual."""

__version__ = "0.1.0"
