"""Start-up hook for ``FERROVENT_AS_GEVENT=1``, run by ``ferrovent-as-gevent.pth``: the first ``import gevent``
installs ferrovent as gevent (``ferrovent/_gevent_alias.py``) and is answered by it.

It runs while site-packages are still being set up, so it imports nothing but ``sys`` until gevent is imported.
"""

import sys


class DeferredGeventAlias:
    """First on ``sys.meta_path``; inert once it has handed over to the real alias."""

    handed_over = False

    def find_spec(self, fullname, path=None, target=None):
        if self.handed_over or not (fullname == "gevent" or fullname.startswith("gevent.")):
            return None
        self.handed_over = True
        from ferrovent import _gevent_alias

        _gevent_alias.install_from_environment()
        return _gevent_alias.find_spec(fullname, path, target)


sys.meta_path.insert(0, DeferredGeventAlias())
