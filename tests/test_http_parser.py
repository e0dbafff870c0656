"""The Rust HTTP/1.x front end the WSGI server is built on: ``_core.parse_request`` (request head to WSGI environ),
``_core.ChunkedDecoder`` and ``_core.HttpParseError``.

Environs are checked whole on realistic requests, and against stock gevent's own pywsgi parsing (run in a
subprocess, the oracle) on the requests both accept.
"""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import unquote

import pytest
from ferrovent import _core

pytestmark = pytest.mark.timeout(30)

BASE = {
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "8080",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "50000",
    "wsgi.url_scheme": "http",
    "wsgi.version": (1, 0),
}

BROWSER = (
    b"GET /static/caf%C3%A9/site.css?v=3&x=%20y HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/css,*/*;q=0.1\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Referer: https://www.example.com/\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: sessionid=0123456789abcdef\r\n"
    b"X-Custom-Thing:   spaced value \t\r\n"
    b"\r\n"
)


def parse(buf, base=None):
    return _core.parse_request(buf, dict(BASE) if base is None else base)


def test_browser_request_gives_the_full_environ():
    environ, consumed, keep_alive, body = parse(BROWSER)
    assert (consumed, keep_alive, body) == (len(BROWSER), True, 0)
    assert environ == {
        **BASE,
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/static/caf\xc3\xa9/site.css",
        "QUERY_STRING": "v=3&x=%20y",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_URI": "/static/caf%C3%A9/site.css?v=3&x=%20y",
        "RAW_URI": "/static/caf%C3%A9/site.css?v=3&x=%20y",
        "HTTP_HOST": "www.example.com",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "HTTP_ACCEPT": "text/css,*/*;q=0.1",
        "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.5",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate, br, zstd",
        "HTTP_REFERER": "https://www.example.com/",
        "HTTP_CONNECTION": "keep-alive",
        "HTTP_COOKIE": "sessionid=0123456789abcdef",
        "HTTP_X_CUSTOM_THING": "spaced value",
    }
    # PEP 3333: the application recovers the original bytes with latin-1.
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/static/café/site.css"


def test_base_environ_is_copied_not_changed():
    base = dict(BASE)
    environ = parse(BROWSER, base)[0]
    assert base == BASE
    assert environ is not base


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_every_prefix_is_incomplete_and_buffer_kinds_agree(kind):
    whole = parse(kind(BROWSER))
    assert whole == parse(BROWSER)
    for end in range(len(BROWSER)):
        assert parse(kind(BROWSER[:end])) is None, end


def test_post_with_content_length_leaves_the_body_in_place():
    head = (
        b"POST /form HTTP/1.1\r\nHost: a\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\n"
    )
    environ, consumed, keep_alive, body = parse(head + b"a=1&b=2")
    assert (consumed, keep_alive, body) == (len(head), True, 7)
    assert environ["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert environ["CONTENT_LENGTH"] == "7"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ


def test_content_length_zero_and_absent():
    environ, _, _, body = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
    assert (environ["CONTENT_LENGTH"], body) == ("0", 0)
    environ, _, _, body = parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert "CONTENT_LENGTH" not in environ and "CONTENT_TYPE" not in environ and body == 0


def test_chunked_request():
    environ, _, _, body = parse(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n")
    assert body == _core.CHUNKED == -1
    assert "CONTENT_LENGTH" not in environ
    assert environ["HTTP_TRANSFER_ENCODING"] == "Chunked"


def test_pipelined_requests_are_parsed_in_order():
    requests = [
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
        b"\r\nGET /three?x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ]
    buf = memoryview(b"".join(requests) + b"GET /four")
    seen = []
    while (parsed := parse(buf)) is not None:
        environ, consumed, keep_alive, body = parsed
        seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], keep_alive, body))
        buf = buf[consumed + body :]
    assert seen == [("GET", "/one", True, 0), ("POST", "/two", True, 4), ("GET", "/three", False, 0)]
    assert bytes(buf) == b"GET /four"


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, Close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", False),
    ],
)
def test_keep_alive_follows_version_and_connection(head, keep_alive):
    environ, _, got, _ = parse(head)
    assert got is keep_alive
    assert environ["SERVER_PROTOCOL"] == head.split(b"\r\n")[0][-8:].decode()


@pytest.mark.parametrize(
    "path",
    ["/plain", "/a%20b", "/%2Fslash%2f", "/bad%zz%4", "/%", "/%e9t%C3%A9", "/raw\xe9\xff", "/%00nul", "/~user/;p=1"],
)
def test_path_info_is_unquoted_as_latin1_like_pep_3333_says(path):
    target = path.encode("latin-1") + b"?q=%41"
    environ = parse(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")[0]
    assert environ["PATH_INFO"] == unquote(path, encoding="latin-1")
    assert environ["QUERY_STRING"] == "q=%41"
    assert environ["RAW_URI"] == environ["REQUEST_URI"] == target.decode("latin-1")


@pytest.mark.parametrize(
    ("target", "path_info"),
    [("*", "*"), ("http://example.com:8080/a/b?c", "/a/b"), ("https://example.com", "/"), ("/a?b?c", "/a")],
)
def test_request_target_forms(target, path_info):
    environ = parse(f"OPTIONS {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())[0]
    assert environ["PATH_INFO"] == path_info
    assert environ["REQUEST_URI"] == target


def test_repeated_fields_join_and_underscored_names_are_dropped():
    head = (
        b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\naccept: b\r\nX-Thing: 1\r\nx-thing: 2\r\nX-THING: 3\r\n"
        b"Cookie: a=1\r\ncookie: b=2\r\nX_Thing: smuggled\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n"
        b"Empty:\r\nLatin: caf\xe9\r\n\r\n"
    )
    environ = parse(head)[0]
    assert environ["HTTP_ACCEPT"] == "a,b"
    assert environ["HTTP_X_THING"] == "1,2,3"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["HTTP_EMPTY"] == ""
    assert environ["HTTP_LATIN"] == "caf\xe9"


def test_a_field_already_in_the_base_environ_is_joined_like_gevent_does():
    environ = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-Origin: client\r\n\r\n", {"HTTP_X_ORIGIN": "server"})[0]
    assert environ["HTTP_X_ORIGIN"] == "server,client"


def test_unusual_methods_and_tokens_are_kept():
    environ = parse(b"PROPFIND /dav HTTP/1.1\r\nHost: h\r\nDepth: 1\r\n\r\n")[0]
    assert environ["REQUEST_METHOD"] == "PROPFIND"
    assert environ["HTTP_DEPTH"] == "1"


LONG_LINE = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n"
MANY_FIELDS = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n"
BIG_HEAD = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"v" * 200_000 + b"\r\n\r\n"

ERRORS = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"GET / \r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET / FTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\n continued\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nBad Name: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ten\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (LONG_LINE, 414),
    (MANY_FIELDS, 431),
    (BIG_HEAD, 431),
    (b"GET / HTTP/9.9\r\n\r\n", 505),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/0.9\r\n\r\n", 505),
]


@pytest.mark.parametrize(("request_bytes", "status"), ERRORS, ids=[f"{s}-{i}" for i, (_, s) in enumerate(ERRORS)])
def test_bad_requests_raise_the_status_to_answer(request_bytes, status):
    with pytest.raises(_core.HttpParseError) as info:
        parse(request_bytes)
    assert info.value.status == status
    assert info.value.reason
    assert str(info.value) == f"{status} {info.value.reason}"


def test_limits_are_enforced_before_the_head_ends():
    # A client that never ends its head cannot make the server buffer more than the limits.
    with pytest.raises(_core.HttpParseError) as info:
        parse(LONG_LINE[:8200])
    assert info.value.status == 414
    with pytest.raises(_core.HttpParseError) as info:
        parse(BIG_HEAD[: 64 * 1024])
    assert info.value.status == 431
    assert parse(BIG_HEAD[: 64 * 1024 - 1]) is None


def test_http_parse_error_is_a_value_error_that_python_can_raise():
    exc = _core.HttpParseError(400, "bad")
    assert isinstance(exc, ValueError)
    assert (exc.status, exc.reason, exc.args) == (400, "bad", (400, "bad"))


def test_other_argument_types_are_refused():
    with pytest.raises(TypeError):
        _core.parse_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n", {})
    with pytest.raises(TypeError):
        _core.parse_request(BROWSER, [])
    strided = memoryview(BROWSER * 2)[::2]
    with pytest.raises(BufferError):
        _core.parse_request(strided, {})


def decode_all(data, pieces=1):
    """Feed ``data`` to a new decoder in ``pieces`` slices; returns (payload, used, done)."""
    decoder = _core.ChunkedDecoder()
    step = max(1, -(-len(data) // pieces))
    payload, used = b"", 0
    for start in range(0, len(data), step):
        out, n = decoder.decode(data[start : start + step])
        payload += out
        used += n
        if decoder.done:
            break
    return payload, used, decoder.done


CHUNKED_BODY = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"


@pytest.mark.parametrize("pieces", [1, 2, 7, len(CHUNKED_BODY)])
def test_chunked_decoder_in_pieces(pieces):
    assert decode_all(CHUNKED_BODY + b"GET / HTTP/1.1\r\n", pieces) == (b"hello world", len(CHUNKED_BODY), True)


def test_chunked_decoder_stops_at_the_next_request_and_stays_done():
    decoder = _core.ChunkedDecoder()
    payload, used = decoder.decode(bytearray(CHUNKED_BODY + b"NEXT"))
    assert (payload, used, decoder.done) == (b"hello world", len(CHUNKED_BODY), True)
    assert decoder.decode(b"more") == (b"", 0)


def test_chunked_decoder_partial_body_is_not_done():
    decoder = _core.ChunkedDecoder()
    assert decoder.decode(memoryview(b"a\r\n01234")) == (b"01234", 8)
    assert not decoder.done
    assert decoder.decode(b"56789\r\n0\r\n\r\n") == (b"56789", 12)
    assert decoder.done


@pytest.mark.parametrize(
    "body",
    [b"x\r\n", b"-5\r\n", b"5\nhello", b"1" * 20 + b"\r\n", b"1;" + b"e" * 5000 + b"\r\n"],
)
def test_chunked_decoder_rejects_bad_framing_for_good(body):
    decoder = _core.ChunkedDecoder()
    with pytest.raises(_core.HttpParseError) as info:
        decoder.decode(body)
    assert info.value.status == 400
    with pytest.raises(_core.HttpParseError):
        decoder.decode(b"0\r\n\r\n")


def test_chunked_decoder_hands_out_the_data_before_bad_framing_then_fails():
    decoder = _core.ChunkedDecoder()
    body = b"2\r\noh\r\n4\r\n hai\r\nX\r\n"
    assert decoder.decode(body) == (b"oh hai", body.index(b"hai") + 3)
    with pytest.raises(_core.HttpParseError):
        decoder.decode(body[body.index(b"hai") + 3 :])
    with pytest.raises(_core.HttpParseError):
        decoder.decode(b"0\r\n\r\n")


GEVENT_ORACLE = r"""
import io, json, sys
from gevent import pywsgi

class Server:
    def get_environ(self):
        return {}

class Handler(pywsgi.WSGIHandler):
    def __init__(self, raw):
        self.server, self.socket, self.client_address = Server(), None, "unix"
        self.rfile = io.BytesIO(raw)

out = []
for raw in json.load(sys.stdin):
    handler = Handler(raw.encode("latin-1"))
    line = handler.read_requestline()
    handler.read_request(line.decode("latin-1") if isinstance(line, bytes) else line)
    env = handler.get_environ()
    out.append({k: v for k, v in env.items() if isinstance(v, str)})
json.dump(out, sys.stdout)
"""

ORACLE_REQUESTS = [
    BROWSER,
    b"POST /submit?a=b HTTP/1.0\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
    b"PUT /%7Euser/caf%E9%2F%zz HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\nX_Dropped: 1\r\n\r\n",
    b"DELETE /x?y=%20&z HTTP/1.1\r\nhost: h\r\nAccept:text/html \r\nX-Empty:\r\n\r\n",
    b"PATCH / HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\nContent-Type: c/d\r\nContent-Length: 0\r\nAccept: x\r\n"
    b"Accept: y\r\n"
    b"\r\n",
]


def test_environ_matches_stock_gevent_pywsgi():
    """The oracle: gevent's WSGIHandler parses the same requests (minus the keys gevent does not set)."""
    payload = json.dumps([r.decode("latin-1") for r in ORACLE_REQUESTS])
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_ORACLE], input=payload, capture_output=True, text=True, timeout=20, check=True
    )
    expected = json.loads(done.stdout)
    assert len(expected) == len(ORACLE_REQUESTS)
    for raw, want in zip(ORACLE_REQUESTS, expected):
        environ = _core.parse_request(raw, {})[0]
        del environ["REQUEST_URI"], environ["RAW_URI"]  # set by gunicorn and uWSGI, not by gevent
        assert environ == want, raw


def test_an_absolute_form_authority_wins_over_host():
    environ = parse(b"GET http://user@other.example:8080/p?q HTTP/1.1\r\nHost: a\r\n\r\n", {"SERVER_NAME": "s"})[0]
    assert (environ["HTTP_HOST"], environ["SERVER_NAME"]) == ("other.example:8080", "other.example")
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/p", "q")
    environ = parse(b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n", {"SERVER_NAME": "s"})[0]
    assert (environ["HTTP_HOST"], environ["SERVER_NAME"]) == ("a", "s")
