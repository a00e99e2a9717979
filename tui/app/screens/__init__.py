"""Screens: the chat (main) screen and the modals over it."""
