"""The HTTP protocol ``mmsk serve`` runs: uvicorn's, with ``TCP_NODELAY`` on every connection.

asyncio turns Nagle's algorithm off only on sockets whose ``proto`` is
``IPPROTO_TCP``. A listening socket made by ``socket.socket(AF_INET,
SOCK_STREAM)`` has ``proto`` 0, and so have the connections it accepts: the
sockets uvicorn binds for ``--workers N`` (``Config.bind_socket``), those
gunicorn hands to its workers, and the pre-bound sockets of
``uvicorn.Server.run(sockets=...)``. On such a connection the response
head and body go out in two writes; Nagle holds the second until the
client acknowledges the first, and the client delays that acknowledgement
(40 ms on Linux). Every response then takes about 44 ms, whatever the
endpoint. :class:`NoDelayHTTPProtocol` sets ``TCP_NODELAY`` itself when a
connection opens.

This module is a leaf: it imports uvicorn at the top, and only uvicorn
imports it, from the import string :data:`PROTOCOL` given as ``http=``.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["PROTOCOL", "NoDelayHTTPProtocol", "set_nodelay"]

#: The import string for uvicorn's ``http=`` option (workers import it by name).
PROTOCOL = "mmsk._serve_http:NoDelayHTTPProtocol"


def set_nodelay(transport: asyncio.BaseTransport) -> bool:
    """Turn Nagle's algorithm off on the TCP socket of ``transport``.

    Parameters
    ----------
    transport : asyncio.BaseTransport
        A connection's transport.

    Returns
    -------
    bool
        True if the socket is a TCP socket and now has ``TCP_NODELAY``;
        False for any other socket (a Unix socket), or none.

    Examples
    --------
    >>> import socket
    >>> from mmsk._serve_http import set_nodelay
    >>> class Transport:  # what asyncio's transports answer
    ...     def __init__(self, sock):
    ...         self.sock = sock
    ...
    ...     def get_extra_info(self, name):
    ...         return self.sock if name == "socket" else None
    >>> with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    ...     done = set_nodelay(Transport(sock))
    ...     done, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) > 0
    (True, True)
    >>> set_nodelay(Transport(None))
    False
    """
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    if sock.type != socket.SOCK_STREAM:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # already closed by the peer
        return False
    return True


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (httptools if installed, else h11) with ``TCP_NODELAY`` on.

    Pass :data:`PROTOCOL` as uvicorn's ``http=`` option; ``mmsk serve``
    does.

    Examples
    --------
    >>> import uvicorn
    >>> from mmsk._serve_http import PROTOCOL, NoDelayHTTPProtocol
    >>> config = uvicorn.Config(lambda scope, receive, send: None, http=PROTOCOL)
    >>> config.load()
    >>> config.http_protocol_class is NoDelayHTTPProtocol
    True
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
