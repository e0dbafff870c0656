"""``python -m ferrovent info``: what this installation of ferrovent is and does (see `ferrovent._info`)."""

from __future__ import annotations

import argparse

from ferrovent._info import print_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferrovent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, poller, CPython-internals optimisations, patch state, hub counters")
    parser.parse_args(argv)
    import ferrovent

    ferrovent.spawn(lambda: None).join()  # a Greenlet started on a fresh stack: the frame-stack state is then known
    print_info(ferrovent.get_hub())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
