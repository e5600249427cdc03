"""A ceiling on the size of a request's head (request line and headers), which httptools does not have.

uvicorn's h11 protocol bounds an incomplete head (`h11_max_incomplete_event_size`), but its httptools
protocol, the faster one this router runs, buffers a head of any size: one client sending megabytes of
header would make the router hold them all. `BoundedHttpToolsProtocol` counts the bytes received while a
head is incomplete and answers 431 once they pass the limit. The count is one addition per read, and the
check happens after parsing, so a head that completes within a large read (a body following it) is never
mistaken for an oversized one.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router.errors import RouterError, encode_error
from router.security.redact import Redactor

MAX_HEADER_BYTES = 32 * 1024
"""Request line plus headers; nginx's default ceiling (4 x 8k buffers), twice Node's."""


def _refusal() -> bytes:
    error = RouterError(
        f"the request line and headers are larger than the router accepts ({MAX_HEADER_BYTES} bytes)",
        status=431,
        type="invalid_request_error",
        code="request_header_fields_too_large",
    )
    body = encode_error(error, Redactor()).body  # the message quotes nothing secret
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


class HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into a parser error, which uvicorn answers."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a limit on the request head.

    Two counts, because httptools hands over a header only once it is complete: the parsed size (URL and
    headers, checked as they arrive) catches a big head that came in one read, and the bytes received
    while the head is still incomplete catch a head that never ends, before it is all held in memory.
    """

    max_header_bytes = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._received = 0  # bytes read while the head is incomplete
        self._parsed = 0  # bytes of URL and headers parsed
        self._in_head = True
        self._too_large = False

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._received += len(data)
        super().data_received(data)
        if self._in_head and self._received > self.max_header_bytes and not self.transport.is_closing():
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._parsed = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._received = 0

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > self.max_header_bytes:
            self._too_large = True
            raise HeadTooLarge

    def _refuse(self) -> None:
        self._too_large = True
        self.logger.warning("refused a request whose head is larger than %d bytes", self.max_header_bytes)
        self.transport.write(_refusal())
        self.transport.close()
