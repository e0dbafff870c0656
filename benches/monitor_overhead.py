"""What the monitoring thread (``config.monitor_thread``) costs: ferrovent's sleep0 and tcp_echo with it off and
on, interleaved in one run.

    python benches/monitor_overhead.py [--rounds N] [--quick] [--impl ferrovent|gevent]

Each measurement is `benches/scenarios.py` in a fresh process; "on" sets ``GEVENT_MONITOR_THREAD_ENABLE=1`` (with
gevent's default ``max_blocking_time`` of 0.1 s), so every hub starts its monitoring thread. Rounds alternate
which setting goes first. The table gives the medians and on/off; the spread of the "off" rounds is the noise to
compare it with. ferrovent's monitor reads a counter the loop writes once per iteration; gevent's installs a
greenlet trace function called on every switch (``--impl gevent`` shows what that costs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SCENARIOS = Path(__file__).with_name("scenarios.py")
BENCHES = ("sleep0", "tcp_echo")
SETTINGS = {"off": {}, "on": {"GEVENT_MONITOR_THREAD_ENABLE": "1"}}


def measure(impl: str, bench: str, setting: str, quick: bool) -> float:
    command = [sys.executable, str(SCENARIOS), impl, bench] + (["--quick"] if quick else [])
    env = {name: value for name, value in os.environ.items() if name != "GEVENT_MONITOR_THREAD_ENABLE"}
    env.update(SETTINGS[setting])
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["values"][bench]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--impl", default="ferrovent", choices=("ferrovent", "gevent"))
    args = parser.parse_args()
    samples: dict[tuple[str, str], list[float]] = {}
    for round_index in range(args.rounds):
        order = list(SETTINGS) if round_index % 2 == 0 else list(SETTINGS)[::-1]
        for bench in BENCHES:
            for setting in order:
                value = measure(args.impl, bench, setting, args.quick)
                samples.setdefault((bench, setting), []).append(value)
                print(f"  round {round_index + 1} {bench} monitor {setting}: {value:,.0f}", file=sys.stderr)
    print(f"{args.impl}, {args.rounds} rounds{' (quick)' if args.quick else ''}: medians, higher is better")
    print(f"{'bench':<10} {'monitor off':>14} {'monitor on':>14} {'on/off':>8} {'off spread':>11}")
    for bench in BENCHES:
        off, on = samples[(bench, "off")], samples[(bench, "on")]
        off_median, on_median = statistics.median(off), statistics.median(on)
        spread = (max(off) - min(off)) / off_median
        print(f"{bench:<10} {off_median:>14,.0f} {on_median:>14,.0f} {on_median / off_median:>8.3f} {spread:>10.1%}")


if __name__ == "__main__":
    main()
