"""The review web app: the page's static files and a small JSON API over a `Session`, behind a guard that lets only
the reviewer's own page in.

The guard, on every request: the Host header must name this server by its loopback address and port (a DNS-rebinding
page reaches the server under its own name and is refused); a request from another origin is refused (Origin,
Sec-Fetch-Site); the random token must come with it: in the URL for the page, then as an HttpOnly SameSite=Strict
cookie for its script and style, and in the `X-Review-Token` header for the API, which another page cannot set without
a CORS preflight this server never grants, so a state-changing POST cannot be forged. No endpoint takes a path.
"""
from __future__ import annotations

import hmac
import json
from importlib import resources
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from datakit.review.session import Filter, ReviewError, Session

TOKEN_HEADER = "x-review-token"
COOKIE = "datakit_review"
BODY_MAX = 16 * 2**20
STATIC = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
    "X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin",
}


def review_app(session: Session, token: str, port: int) -> Guard:
    """The ASGI app for one session, reachable at http://127.0.0.1:`port`/?token=`token`."""

    def page(request: Request) -> Response:
        response = Response(_asset("index.html"), media_type="text/html; charset=utf-8")
        response.set_cookie(cookie_name(port), token, httponly=True, samesite="strict", path="/")
        return response

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", 404, media_type="text/plain")
        return Response(_asset(name), media_type=STATIC[name])

    def summary(request: Request) -> Response:
        return JSONResponse(session.summary())

    def items(request: Request) -> Response:
        q = request.query_params
        return JSONResponse(session.items(Filter.of(dict(q)), _int(q.get("offset"), 0), _int(q.get("limit"), 50)))

    def record(request: Request) -> Response:
        return JSONResponse(session.record(request.path_params["line"]))

    async def recheck(request: Request) -> Response:
        body = await _json(request)
        return JSONResponse(session.recheck(_line(body), body.get("texts")))

    async def decide(request: Request) -> Response:
        body = await _json(request)
        return JSONResponse(session.decide(body.get("decisions") if isinstance(body.get("decisions"), list) else [body]))

    async def pick(request: Request) -> Response:
        body = await _json(request)
        return JSONResponse(session.pick(body.get("rule"), _line(body), body.get("keep")))

    async def bulk(request: Request) -> Response:
        body = await _json(request)
        wanted = Filter.of(body.get("filter") if isinstance(body.get("filter"), dict) else {})
        confirm = body.get("confirm") if isinstance(body.get("confirm"), int) else None
        return JSONResponse(session.bulk(wanted, body.get("action"), confirm, body.get("note")))

    async def undo(request: Request) -> Response:
        return JSONResponse(session.undo())

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/summary", summary),
              Route("/api/items", items), Route("/api/record/{line:int}", record),
              Route("/api/recheck", recheck, methods=["POST"]), Route("/api/decide", decide, methods=["POST"]),
              Route("/api/pick", pick, methods=["POST"]), Route("/api/bulk", bulk, methods=["POST"]), Route("/api/undo", undo, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={ReviewError: _refused})
    return Guard(app, token, port)


class Guard:
    """ASGI middleware: Host, origin and token checks before anything else runs; security headers on every answer."""

    def __init__(self, app, token: str, port: int):
        self.app, self.token, self.port = app, token, port
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{h}" for h in self.hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        why = self._refusal(scope)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
            await send(message)

        if why is not None:
            await Response(f"forbidden: {why}\n", 403, media_type="text/plain")(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope) -> str | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host") not in self.hosts:
            return "this server answers only to 127.0.0.1 and localhost on its own port"
        if "origin" in headers and headers["origin"] not in self.origins:
            return "requests from other sites are refused"
        if headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            return "requests from other sites are refused"
        path, method = scope["path"], scope["method"]
        if path.startswith("/api/"):
            given = headers.get(TOKEN_HEADER)
        else:
            given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0] or _cookie(
                headers.get("cookie", ""), cookie_name(self.port))
            if method not in ("GET", "HEAD"):
                return "only the API takes POST requests"
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return "missing or wrong token: open the URL `datakit review` printed"
        return None


def cookie_name(port: int) -> str:
    """The page's cookie, one per port: browsers share cookies between ports of one host, and two reviews may run."""
    return f"{COOKIE}_{port}"


def _cookie(header: str, wanted: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == wanted:
            return value
    return None


def _asset(name: str) -> bytes:
    return resources.files("datakit.review").joinpath("static", name).read_bytes()


async def _json(request: Request) -> dict:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > BODY_MAX:
        raise ReviewError(f"request too large (over {BODY_MAX // 2**20} MB)")
    body = await request.body()
    if len(body) > BODY_MAX:
        raise ReviewError(f"request too large (over {BODY_MAX // 2**20} MB)")
    try:
        data = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ReviewError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ReviewError("the request body must be a JSON object")
    return data


def _line(body: dict) -> int:
    line = body.get("line")
    if not isinstance(line, int) or isinstance(line, bool):
        raise ReviewError("the request needs the record's line (a number)")
    return line


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise ReviewError(f"expected a number, not {value!r}") from None


def _refused(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, 400)
