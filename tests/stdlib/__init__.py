"""CPython's own test modules run after ``patch_all()``, on ferrovent and on stock gevent (see runner.py)."""
