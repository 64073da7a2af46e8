"""Binding and serving the review page: one socket, one uvicorn server, quiet logs.

The socket is bound before the URL is printed, so the port in the URL is the one served
(`--port 0` picks a free one). uvicorn's access log is off: a request line can hold the token.
"""
from __future__ import annotations

import socket

from archlab.ui.security import is_loopback


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6); OSError when the address is taken or not ours."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url(sock: socket.socket, host: str, token: str | None) -> str:
    """The address to open: the bound port; a wildcard address shown as this machine's name."""
    port = sock.getsockname()[1]
    shown = host
    if host in ("0.0.0.0", "::", ""):
        shown = socket.gethostname()
    elif ":" in host:
        shown = f"[{host}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(app, sock: socket.socket) -> None:
    """Serve `app` on `sock` until interrupted (Ctrl-C, SIGTERM)."""
    import uvicorn
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


__all__ = ["bind", "is_loopback", "serve", "url"]
