"""Spreading one model over several machines with llama.cpp's RPC backend.

``lmdesk rpc-worker`` (``cli.py``) runs on each helper machine: llama.cpp's own RPC server
(``server.py``, in a process of its own, started through the llama.cpp library lmdesk was
built with) behind a small gate (``gate.py``) that admits only allowed client addresses and
answers lmdesk's status questions (memory offered, memory in use, round trip, bandwidth).
The main machine names workers as ``host:port`` (``--rpc``, a profile's RPC workers); the
model worker then offloads layers to them (``tui.engine.rpc``). No Textual here.
"""
