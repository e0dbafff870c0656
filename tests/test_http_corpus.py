"""A corpus of requests (smuggling vectors, framing, bad bytes), each with ferrovent's verdict, and h11's beside it.

A verdict is what a server does with the bytes of one connection: ``OK`` with how many bytes the first request
took (head and body; what follows is the next request), or ``REFUSED``. ferrovent's verdict comes from its parser
and chunked decoder (``ferrovent._core``); where h11 is installed, its verdict on the same bytes is checked against
the one recorded in the table too, so that every disagreement is written down, with the reason ferrovent differs.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import pytest
from ferrovent import _core

REFUSED = "refused"
Verdict = Union[int, str]  # bytes taken by the first request, or REFUSED

H = b"Host: a\r\n"
TE = b"Transfer-Encoding: chunked\r\n"
NEXT = b"GET /second HTTP/1.1\r\n" + H + b"\r\n"


class Case(NamedTuple):
    name: str
    data: bytes
    ferrovent: Verdict
    h11: Optional[Verdict] = None  # None: h11 agrees with ferrovent
    why: str = ""  # why ferrovent differs from h11, where it does


_CHUNKED_HEAD = b"POST / HTTP/1.1\r\n" + H + TE + b"\r\n"
_GET = b"GET / HTTP/1.1\r\n" + H + b"\r\n"
_POST_5 = b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"
_TRAILER = b"0\r\nX-Sum: 1\r\n\r\n"
_NO_NAME = b"5;\r\nhello\r\n0\r\n\r\n"
_BWS = b"5\t;x\r\nhello\r\n0\r\n\r\n"
_FOLDED = b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n"
_TE_10 = b"POST / HTTP/1.0\r\n" + TE + b"\r\n5\r\nhello\r\n0\r\n\r\n"

CORPUS = [
    # -- framing that must work --
    Case("get", _GET + NEXT, len(_GET)),
    Case("content-length body", _POST_5 + NEXT, len(_POST_5)),
    Case("chunked body", _CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n\r\n" + NEXT, len(_CHUNKED_HEAD) + 15),
    Case("chunked with trailer", _CHUNKED_HEAD + _TRAILER + NEXT, len(_CHUNKED_HEAD + _TRAILER)),
    Case("chunk extension", _CHUNKED_HEAD + b"5;a=b\r\nhello\r\n0\r\n\r\n", len(_CHUNKED_HEAD) + 19),
    Case("http/1.0 without host", b"GET / HTTP/1.0\r\n\r\n", 18),
    # -- RFC 9112 details (issue 11, part 4) --
    Case(
        "trailer line without a colon is the next request, not a trailer",
        _CHUNKED_HEAD + b"0\r\n" + NEXT,
        REFUSED,
    ),
    Case("trailer name with a space before the colon", _CHUNKED_HEAD + b"0\r\nX : 1\r\n\r\n", REFUSED),
    Case(
        "chunk extension without a name (5;)",
        _CHUNKED_HEAD + _NO_NAME,
        REFUSED,
        h11=len(_CHUNKED_HEAD + _NO_NAME),
        why="RFC 9112 7.1.1: chunk-ext-name is a token, never empty; h11 takes ';' and anything after it",
    ),
    Case(
        "whitespace before a chunk extension (5<TAB>;x)",
        _CHUNKED_HEAD + _BWS,
        len(_CHUNKED_HEAD + _BWS),
        h11=REFUSED,
        why="RFC 9112 7.1.1 allows BWS before ';' and RFC 9110 5.6.3 says a recipient must accept it; h11 does not",
    ),
    Case("http/1.1 without host", b"GET / HTTP/1.1\r\n\r\n", REFUSED),
    Case(
        "one empty line before the request",
        b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
        20 + len(H),
        h11=REFUSED,
        why="RFC 9112 2.2: a server should ignore at least one empty line before the request line",
    ),
    Case("five empty lines before the request", b"\r\n" * 5 + b"GET / HTTP/1.1\r\n" + H + b"\r\n", REFUSED),
    # -- smuggling vectors --
    Case(
        "content-length and chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n" + TE + b"\r\n",
        REFUSED,
        h11="incomplete",
        why="RFC 9112 6.1 lets a server refuse it (h11 frames by chunked and waits); refusing shuts the smuggling door",
    ),
    Case(
        "two content-lengths",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
        REFUSED,
    ),
    Case(
        "content-length list",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1, 2\r\n\r\n",
        REFUSED,
    ),
    Case("signed content-length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", REFUSED),
    Case("chunked not last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n", REFUSED),
    Case("space before colon", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n", REFUSED),
    Case("obs-fold", _FOLDED, REFUSED, h11=len(_FOLDED), why="RFC 9112 5.2 lets a server refuse obsolete folding"),
    Case(
        "transfer-encoding in http/1.0",
        _TE_10,
        REFUSED,
        h11=len(_TE_10),
        why="RFC 9112 6.1: a 1.0 message with Transfer-Encoding has faulty framing",
    ),
    Case(
        "chunk size overflow",
        _CHUNKED_HEAD + b"10000000000000000\r\n",
        REFUSED,
        h11="incomplete",
        why="RFC 9112 7.1 asks recipients to guard against overflow: sizes past 2**63-1 are refused (h11 waits)",
    ),
    Case("chunk size with 0x", _CHUNKED_HEAD + b"0x5\r\nhello\r\n0\r\n\r\n", REFUSED),
    Case("chunk data longer than its size", _CHUNKED_HEAD + b"3\r\nhello\r\n0\r\n\r\n", REFUSED),
    Case("bare LF after the chunk size", _CHUNKED_HEAD + b"5\nhello\r\n0\r\n\r\n", REFUSED),
    # -- bad bytes --
    Case("NUL in a header value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", REFUSED),
    Case("bare CR in a header value", b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", REFUSED),
    Case("DEL in the target", b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", REFUSED),
    Case("space in the method", b"G T / HTTP/1.1\r\n" + H + b"\r\n", REFUSED),
    Case("TLS hello on a plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", REFUSED),
]


def ferrovent_verdict(data: bytes) -> Verdict:
    try:
        parsed = _core.parse_request(data, {})
        if parsed is None:
            return "incomplete"
        _, consumed, _, body = parsed
        if body == _core.CHUNKED:
            decoder = _core.ChunkedDecoder()
            end = consumed
            while True:  # the data before bad framing comes first; the next call raises
                payload, used = decoder.decode(data[end:])
                end += used
                if decoder.done or not payload:
                    return end if decoder.done else "incomplete"
        return consumed + body if consumed + body <= len(data) else "incomplete"
    except _core.HttpParseError:
        return REFUSED


def h11_verdict(data: bytes) -> Verdict:
    import h11

    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                return "incomplete"
            if type(event) is h11.EndOfMessage:
                return len(data) - len(connection.trailing_data[0])
    except h11.RemoteProtocolError:
        return REFUSED


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_ferrovent_verdict(case):
    assert ferrovent_verdict(case.data) == case.ferrovent


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_h11_verdict_is_the_recorded_one(case):
    pytest.importorskip("h11")
    expected = case.ferrovent if case.h11 is None else case.h11
    assert h11_verdict(case.data) == expected
    assert (case.h11 is None) == (not case.why), "every disagreement says why"
