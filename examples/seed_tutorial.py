"""The seed tutorial: three greenlets each print a count, on one OS thread.

    python examples/seed_tutorial.py            # 15 lines, one greenlet after another
    python examples/seed_tutorial.py --yield    # the three alternate round-robin, in spawn order
    python examples/seed_tutorial.py 500000     # a longer run (still one OS thread)

Each line reads ``<Greenlet at 0x7f...: f(5)> 0``.
"""

import argparse

from ferrovent import monkey

monkey.patch_socket()

import ferrovent as gevent  # noqa: E402  (patch first, as gevent programs do)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("count", nargs="?", type=int, default=5, help="how many lines each greenlet prints (default 5)")
parser.add_argument("--yield", dest="yield_", action="store_true", help="gevent.sleep(0) after each print")
options = parser.parse_args()


def f(n):
    for i in range(n):
        print(gevent.getcurrent(), i)
        if options.yield_:
            gevent.sleep(0)


g1 = gevent.spawn(f, options.count)
g2 = gevent.spawn(f, options.count)
g3 = gevent.spawn(f, options.count)
g1.join()
g2.join()
g3.join()
