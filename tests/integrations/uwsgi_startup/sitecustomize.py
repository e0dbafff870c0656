"""Start-up of uWSGI's embedded interpreter in the uWSGI test (this directory is first on its PYTHONPATH): stock gevent
blocked, ferrovent as gevent. A wheel install's ``ferrovent-as-gevent.pth`` has already answered the test's
``FERROVENT_AS_GEVENT=1``; an editable install has no .pth, so the alias is installed here in its place."""

import sys

from tests.integrations import as_gevent

if "_ferrovent_startup" in sys.modules:
    as_gevent.block_stock_gevent()
else:
    as_gevent.install()
