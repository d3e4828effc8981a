"""How a request that never reaches the routes is answered: malformed HTTP, timeouts.

aiohttp's HTTP parser rejects some requests before any middleware runs (a
header line over 8190 bytes, a bad chunk size, Content-Length together with
Transfer-Encoding, a non-token method, raw non-ASCII in the request target).
Its ``RequestHandler.handle_error`` then answers ``text/plain`` quoting the
offending bytes, and logs a traceback at ERROR. aiohttp has no public hook for
that answer (aio-libs/aiohttp#3287 is open), so this module subclasses the
three classes involved, each at one documented seam:

- :class:`ApiRequestHandler` overrides ``handle_error`` (the method aiohttp
  calls for a parser error, a handler timeout and an escaped exception) to
  answer the API's ``{"error": {"code", "message"}}`` JSON, with a message of
  its own (never the request's bytes), and to log one line without a traceback;
- :class:`ApiServer` is ``web.Server`` (the protocol factory asyncio calls per
  connection) making that handler;
- :class:`ApiRunner` is ``web.AppRunner`` serving the application through an
  ``ApiServer``. It overrides ``_make_server``, aiohttp's one place where an
  application's server is built; ``tests/test_http_hostile.py`` fails if a
  new aiohttp changes it.

The timeouts of a connection are set here too (see :func:`handler_options`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

log = logging.getLogger(__name__)

#: an idle keep-alive connection, or one that has not sent a whole request head
#: (request line and headers) this long after it opened or after its last answer, is closed
KEEPALIVE_TIMEOUT_S = 30.0

#: at most this long, an unread body is drained after its answer (see handler_options)
LINGERING_TIME_S = 5.0

#: what each parser error is called in an answer: (code, message); the first match wins
_PARSER_ERRORS: tuple[tuple[type[Exception], str, str], ...] = (
    (LineTooLong, "too_large", "a request line or header line is too long"),
    (BadHttpMethod, "bad_request", "the request method is not valid"),
    (InvalidURLError, "bad_request", "the request target is not a valid URL"),
    (BadStatusLine, "bad_request", "the request line is not valid HTTP"),
    (InvalidHeader, "bad_request", "a header is not valid"),
    (TransferEncodingError, "bad_request", "the chunked body is not valid"),
    (ContentLengthError, "bad_request", "the body does not match its Content-Length"),
)


def error_body(code: str, message: str) -> bytes:
    """The API's error document, as bytes."""
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def describe(exc: BaseException | None) -> tuple[str, str]:
    """(code, message) for a request aiohttp's parser refused; never the request's bytes."""
    for kind, code, message in _PARSER_ERRORS:
        if isinstance(exc, kind):
            return code, message
    text = str(getattr(exc, "message", "") or "")
    if "Transfer-Encoding" in text and "Content-Length" in text:
        return "bad_request", "Content-Length and Transfer-Encoding may not come together"
    if "chunk" in text.lower():
        return "bad_request", "the chunked body is not valid"
    return "bad_request", "malformed HTTP request"


class ApiRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering what it refuses in the API's JSON shape."""

    __slots__ = ()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's log of a failed connection: one line when the client caused it.

        After an answer, aiohttp drains a body left unread; a body the parser
        cannot decode (bad gzip, bad chunk) raises there, and aiohttp would log
        that at ERROR with a traceback.
        """
        exc = kw.get("exc_info")
        if isinstance(exc, web.RequestPayloadError | HttpProcessingError | ConnectionError):
            # the answer was logged already (the body's error, one line): this is its echo
            log.debug("dropped a connection whose request body could not be read (%s)",
                      type(exc).__name__)
            return
        super().log_exception(*args, **kw)

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The answer to a request aiohttp could not hand to the application.

        ``status`` is 400 for a parser error (aiohttp says 400 for an oversized
        line too), 504 for a handler timeout, 500 for an exception that escaped
        the middlewares (a bug: logged with its traceback). The connection closes.
        """
        if request.writer.output_size > 0:  # an answer already started: nothing to add
            raise ConnectionError("response already started; cannot send an error")
        if status >= 500 and status != 504:
            log.error("internal error on %s %s", request.method, request.path,
                      exc_info=exc)
            code, text = "internal", "internal server error"
        elif status == 504:
            log.warning("request handler timed out on %s %s", request.method, request.path)
            code, text = "timeout", "the request took too long"
        else:
            code, text = describe(exc)
            if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
                status = exc.code
            status = status if 400 <= status < 500 else 400
            # one line, no traceback, nothing the client sent
            log.warning("refused a malformed request from %s: %s (%s)", request.remote,
                        text, type(exc).__name__ if exc else "?")
        resp = web.Response(status=status, body=error_body(code, text),
                            content_type="application/json", charset="utf-8")
        resp.force_close()
        return resp


class ApiServer(web.Server):
    """``web.Server`` whose connections are :class:`ApiRequestHandler`."""

    def __call__(self) -> ApiRequestHandler:
        """A handler for one new connection (asyncio's protocol factory)."""
        return ApiRequestHandler(self, loop=asyncio.get_running_loop(), **self._kwargs)


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` serving its application through an :class:`ApiServer`."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the app's start-up and freezes it
        return ApiServer(plain.request_handler, request_factory=plain.request_factory,
                         handler_cancellation=plain.handler_cancellation,
                         loop=asyncio.get_running_loop(), **plain._kwargs)


def handler_options(keepalive_timeout: float) -> dict[str, Any]:
    """Options of every connection's handler (aiohttp's ``RequestHandler`` arguments).

    After an answer to a request whose body was not read whole (a 401 before
    the body, a 408 for a stalled one), aiohttp drains that body before closing
    for ``lingering_time`` (10 s by default): at most 5 s here, and never longer
    than ``keepalive_timeout``, so that a stalled client is let go soon.
    """
    return {"keepalive_timeout": keepalive_timeout, "access_log": None,
            "lingering_time": min(LINGERING_TIME_S, keepalive_timeout)}
