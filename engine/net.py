"""Recognising network failures across HTTP client libraries.

huggingface_hub has used requests, httpx and httpx2 over its versions; their exceptions share
no base class, so they are recognised by name in the exception's class hierarchy.
"""

from __future__ import annotations

_NETWORK_BASES = {"TransportError", "TimeoutException", "NetworkError", "ConnectError",
                  "ConnectionError", "Timeout", "ProtocolError", "RemoteProtocolError"}


def is_network_error(err: BaseException) -> bool:
    """Whether ``err`` means the network or server could not be reached / dropped us."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in _NETWORK_BASES for cls in type(err).__mro__)


def is_timeout(err: BaseException) -> bool:
    """Whether ``err`` is a timeout (a subset of network errors)."""
    if isinstance(err, TimeoutError):
        return True
    return any("Timeout" in cls.__name__ for cls in type(err).__mro__)
