"""gevent's own test suite, taken from the installed gevent wheel and run with ferrovent installed as ``gevent``.

``runner.py`` runs it on both sides and compares; ``test_gevent_suite.py`` is the cheap ratchet CI runs.
"""
