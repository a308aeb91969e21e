"""A multi-worker server's connections have Nagle's algorithm off (TCP_NODELAY).

uvicorn binds the shared port of ``--workers N`` with protocol 0, and asyncio then leaves Nagle on for the
connections it accepts: an answer written as headers then body waited for the client's delayed ACK,
+40 ms on every request after the first on a kept-alive connection (measured on the demo: /api/auth/me
44 ms → 2 ms)."""

from __future__ import annotations

import socket

import uvicorn

from gisgov.api.listener import NoDelayConfig


def accepted_nodelay(config: uvicorn.Config) -> int:
    listener = config.bind_socket()
    listener.listen(1)  # as the worker's asyncio server does
    try:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = listener.accept()
            with conn:
                return conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()


def test_uvicorns_own_listener_leaves_nagle_on():
    # the defect this guards against: what `uvicorn.run(..., workers=N)` binds
    assert accepted_nodelay(uvicorn.Config("x:y", host="127.0.0.1", port=0, workers=2)) == 0


def test_the_workers_listener_turns_nagle_off_on_accepted_connections():
    assert accepted_nodelay(NoDelayConfig("x:y", host="127.0.0.1", port=0, workers=2)) != 0


def test_serve_with_workers_binds_through_it():
    import inspect

    from gisgov.cli import serve

    src = inspect.getsource(serve.run_server)
    assert "NoDelayConfig(" in src and 'uvicorn.run(\n        "gisgov.api.asgi' not in src
