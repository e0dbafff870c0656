"""The seed's third example: fetch several URLs at once with plain urllib, on one OS thread.

    python examples/concurrent_downloads.py [URL ...]

``monkey.patch_all()`` makes the stdlib's sockets, ssl and DNS cooperative, so each ``urlopen`` parks its greenlet
while it waits and the downloads overlap: every "GET" line prints before the first reply arrives. Certificates
are checked as urllib always does; for a server with a private CA, point ``SSL_CERT_FILE`` at the CA's PEM file.
"""

from ferrovent import monkey

monkey.patch_all()

import sys  # noqa: E402 -- patch first, then import (the point of the example)
import urllib.request  # noqa: E402

import ferrovent as gevent  # noqa: E402

urls = sys.argv[1:] or ["https://www.google.com/", "https://www.python.org/", "https://www.wikipedia.org/"]


def f(url):
    print(f"GET: {url}")
    data = urllib.request.urlopen(url).read()
    print(f"{len(data)} bytes received from {url}.")


gevent.joinall([gevent.spawn(f, url) for url in urls])
