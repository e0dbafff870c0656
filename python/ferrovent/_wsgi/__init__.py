"""The WSGI server's parts, private: `ferrovent.pywsgi` is the public face and re-exports what users name.

``conn``: one client connection's byte stream (receive, send, the read-ahead buffer, its failure state);
``body``: ``wsgi.input`` and ``wsgi.file_wrapper``; ``handler``: `WSGIHandler`, one connection's requests and
responses; ``environ``: the environ dict classes; ``log``: the access and error log adapters.
"""

__all__: list[str] = []
