"""``_core.response_head``, the WSGI handler's start_response in one Rust call: wherever it answers, its answer is
the one the handler's Python path (the specification) gives for the same call; where it declines (None), the
Python path runs, and it never raises."""

from __future__ import annotations

import itertools
import random
import time
from email.utils import formatdate

import pytest
from ferrovent import _core
from ferrovent.pywsgi import WSGIHandler

pytestmark = pytest.mark.timeout(60)

STATUSES = [
    "200 OK",
    "404 Not Found",
    "101 Switching Protocols",
    "100 Continue",
    "204 No Content",
    "304 Not Modified",
    "500",
    "20",
    "2x0 Odd",
    "+20 Odd",
    " 200 OK",
    "200 Caf\xe9",
    "200 \u20ac",
    "200 OK\r\nX: y",
    b"200 OK",
    None,
]
NAMES = ["Content-Type", "Content-Length", "content-LENGTH", "Date", "DATE", "Connection", "connection",
         "Transfer-Encoding", "Set-Cookie", "X-\xe9", "X-\u20ac", "X-A\n", "", b"X-Bytes"]  # fmt: skip
VALUES = ["text/plain", "5", "0", "close", "Close", "keep-alive", "chunked", "caf\xe9", "\u20ac", "a\r\nb", "", 7]


def python_path(status: object, headers: object, http11: bool, close: bool) -> object:
    """What the handler's own code gives (a tuple), or the exception it raises."""
    handler = WSGIHandler.__new__(WSGIHandler)  # only close_connection and ApplicationError are read
    handler.close_connection = close
    try:
        return WSGIHandler._build_head(handler, status, headers, http11)
    except Exception as error:
        return error


def without_date(answer: object) -> object:
    """``answer`` with its Date line taken out: the two paths may run on either side of a second's end."""
    if not isinstance(answer, tuple):
        return answer
    head, *rest, date_line = answer
    return (head.replace(date_line.encode(), b"[date]"), *rest, date_line[:6])


def random_headers(rng: random.Random) -> object:
    pairs = [(rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randrange(5))]
    shape = rng.randrange(8)
    if shape == 0:
        return tuple(pairs)
    if shape == 1:
        return iter(pairs)
    if shape == 2 and pairs:
        return [*pairs[:-1], [*pairs[-1]]]  # a list pair
    return pairs


def test_answers_match_the_python_path() -> None:
    rng = random.Random(20261205)
    answered = 0
    for _ in range(20000):
        status = rng.choice(STATUSES)
        headers = random_headers(rng)
        http11, close = rng.random() < 0.7, rng.random() < 0.3
        fast = _core.response_head(status, headers, http11, close)
        if fast is None:
            continue
        answered += 1
        expected = python_path(status, headers, http11, close)
        assert without_date(fast) == without_date(expected), (status, headers, http11, close)
    assert answered > 2000


def test_the_date_line_is_now() -> None:
    before = time.time()
    line = _core.http_date_line()
    after = time.time()
    assert line in {f"Date: {formatdate(int(t), usegmt=True)}\r\n" for t in (before, after)}
    fast = _core.response_head("200 OK", [], True, False)
    assert fast[0].endswith(fast[6].encode()) and fast[6].startswith("Date: ")
    assert _core.response_head("200 OK", [("Date", "then")], True, False)[6] == ""


@pytest.mark.parametrize("http11, close", list(itertools.product([True, False], [True, False])))
def test_common_responses_are_answered(http11: bool, close: bool) -> None:
    for status, headers in [
        ("200 OK", [("Content-Type", "text/plain")]),
        ("404 Not Found", [("Content-Type", "text/html"), ("Content-Length", "9")]),
        ("302 Found", (("Location", "/caf\xe9"), ("Connection", "close"), ("Date", "then"))),
        ("101 Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade")]),
    ]:
        fast = _core.response_head(status, headers, http11, close)
        assert fast is not None
        assert without_date(fast) == without_date(python_path(status, headers, http11, close))


def test_declines_without_raising() -> None:
    declined = [
        (None, []),
        ("200 OK", None),
        ("200 OK", [("A", "b", "c")]),
        ("200 OK", [["A", "b"]]),
        ("200 OK", [("A", b"b")]),
        ("200 OK", [("A", "\u20ac")]),
        ("200 OK", [("A", "b\nc")]),
        ("204 No Content", []),
        ("2 OK", []),
    ]
    for status, headers in declined:
        assert _core.response_head(status, headers, True, False) is None
