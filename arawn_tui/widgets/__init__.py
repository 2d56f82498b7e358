"""Widgets of the main screen: lists, chat, input, summary panel, status bar."""
