"""``serve``: a persona over HTTP, on an inference engine (``engine``, ``proxy``) or built in.

``builtin`` is the older stdlib server speaking TGI's ``generate`` API, one reply at a time;
its names stay importable from here for the tests and tools that use them.
"""

from engine.serve.builtin import CLIENT_TIMEOUT_S, ChatServer, make_server

__all__ = ["CLIENT_TIMEOUT_S", "ChatServer", "make_server"]
