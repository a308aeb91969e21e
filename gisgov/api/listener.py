"""The listening socket of a multi-worker server (`gisgov serve --workers N`)."""

from __future__ import annotations

import socket

import uvicorn


class NoDelayConfig(uvicorn.Config):
    """uvicorn's configuration, with Nagle's algorithm off on the shared listening socket.

    With ``workers`` > 1 uvicorn binds the port itself with ``socket.socket(family)``: protocol 0, so
    asyncio's transport does not set ``TCP_NODELAY`` on the connections it accepts (it does only for
    ``IPPROTO_TCP`` sockets). An answer written in two pieces (headers, then body: every streamed or
    middleware-wrapped response) then waited for the client's delayed ACK: +40 ms on every request after
    the first on a kept-alive connection. Linux copies ``TCP_NODELAY`` from a listening socket to the
    sockets it accepts, so setting it here covers every worker's connections (a module-level class: the
    configuration is pickled to the worker processes).
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
