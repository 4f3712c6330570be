"""The connections of ``mmsk serve`` have TCP_NODELAY, whatever socket uvicorn listens on."""

import socket
import threading
import time

import pytest

uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from mmsk import serve as serve_module  # noqa: E402
from mmsk._serve_http import PROTOCOL, NoDelayHTTPProtocol  # noqa: E402


async def _app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _server_side_nodelay(**config):
    """Serve ``_app`` on a pre-bound socket (proto 0, as uvicorn binds for workers).

    Return the TCP_NODELAY option of the server's side of one keep-alive
    connection, read while the connection is open.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, not IPPROTO_TCP
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_app, log_level="warning", lifespan="off", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        port = sock.getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/").text == "ok"
            (connection,) = server.server_state.connections
            return connection.transport.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_connections_get_tcp_nodelay_on_a_socket_asyncio_leaves_alone():
    assert _server_side_nodelay(http=PROTOCOL) != 0
    assert _server_side_nodelay(http=NoDelayHTTPProtocol) != 0


@pytest.mark.parametrize("workers", [None, 2])
def test_serve_runs_uvicorn_with_the_nodelay_protocol(monkeypatch, workers):
    seen = {}
    monkeypatch.setattr(serve_module, "_load_app", lambda path, **kw: object())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.setenv(serve_module._OPTIONS_ENV, "{}")  # restored after the test
    serve_module.serve("model.mmsk", workers=workers, log_level="warning")
    assert seen["http"] == PROTOCOL == serve_module._HTTP_PROTOCOL
    assert seen.get("workers") == workers
