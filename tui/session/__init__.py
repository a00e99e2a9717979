"""The reply pipeline shared by the app, ``lmdesk ask`` and ``lmdesk serve``: the typed model
choice and the engines it loads (``ModelSession``), one place that turns settings into load
and sampling parameters, the prompt built from a conversation, and running a turn (reasoning,
answer, tool calls). No Textual here.
"""
