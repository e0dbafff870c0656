"""CPython's own asyncio test suite run on the default loop and on ferrovent's (see runner.py)."""
