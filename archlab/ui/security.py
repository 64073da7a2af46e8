"""Who may use the review page, and how a cross-site page is kept from using it.

- **Loopback by default.** Bound to 127.0.0.1 / ::1 / localhost, the page needs no token, but
  it answers only requests whose `Host` header names a loopback address: a web page that points
  its own domain name at 127.0.0.1 (DNS rebinding) is refused (403).
- **A token anywhere else.** Bound to any other address (or with `archlab ui --token`), every
  request, pages included (they show code and LLM text), needs the token: `?token=` once (it is
  then kept in an HttpOnly, SameSite=Strict cookie and dropped from the address bar), the cookie,
  or `Authorization: Bearer`. Without it: 401.
- **Every state-changing request** (POST) must carry the form's CSRF token (random per server
  start, shown only inside the page), and is refused (403) when the browser says it comes from
  another site (`Origin` not this host, `Sec-Fetch-Site: cross-site`).
- **Every response** forbids scripts and styles from anywhere but the page's own static files
  (inline ones included), framing, and MIME sniffing, and sends no referrer to other sites.

What it does not do: TLS (put a proxy in front, or use an SSH tunnel), users or roles: whoever
has the token may decide reviews.
"""
from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import URL
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

COOKIE = "archlab_ui_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = ("localhost",)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",      # no-referrer would make browsers send "Origin: null" on our own forms
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name, optionally [bracketed]) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_token(host: str, asked: bool = False) -> bool:
    """A page bound anywhere but loopback always needs a token; on loopback, only when asked for."""
    return asked or not is_loopback(host)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _host_name(value: str) -> str:
    """The host part of a `Host` header (`127.0.0.1:8400`, `[::1]:8400`, `localhost`)."""
    return urlsplit(f"//{value}").hostname or ""


class Guard(BaseHTTPMiddleware):
    """The rules of the module docstring, for every request."""

    def __init__(self, app, token: str | None, csrf: str):
        super().__init__(app)
        self.token, self.csrf = token, csrf

    async def dispatch(self, request: Request, call_next) -> Response:
        response = await self._check(request)
        if response is None:
            response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _check(self, request: Request) -> Response | None:
        host = request.headers.get("host", "")
        if self.token is None and not is_loopback(_host_name(host)):
            return PlainTextResponse(f"refused: this page serves loopback only and the request named host {host!r}; "
                                     "open it as http://127.0.0.1:PORT/ (or start `archlab ui --token`)", 403)
        if self.token is not None:
            offered = request.query_params.get("token")
            if offered is not None and secrets.compare_digest(offered, self.token) \
                    and request.method in SAFE_METHODS:
                # keep the token in a cookie and take it out of the address bar (and the history)
                rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                target = URL(path=request.url.path, query=rest)
                response = RedirectResponse(str(target), 303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict",
                                    secure=request.url.scheme == "https")
                return response
            if not self._authorized(request):
                return PlainTextResponse("unauthorized: this page needs the token `archlab ui` printed; open the URL "
                                         "it printed (…/?token=…), or send `Authorization: Bearer TOKEN`", 401)
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != host:
                return PlainTextResponse(f"refused: a request from {origin!r} may not change this page's state", 403)
            if request.headers.get("sec-fetch-site") == "cross-site":
                return PlainTextResponse("refused: a cross-site request may not change this page's state", 403)
        return None

    def _authorized(self, request: Request) -> bool:
        assert self.token is not None
        offered = request.cookies.get(COOKIE, "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            offered = header[7:].strip()
        return bool(offered) and secrets.compare_digest(offered, self.token)


def csrf_ok(expected: str, offered: str | None) -> bool:
    return bool(offered) and secrets.compare_digest(str(offered), expected)
