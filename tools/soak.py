"""Soak: the chaos harness for a long run, not in CI (issue 6 item 7).

    .venv/bin/python tools/soak.py --minutes 30 --rate 100 --outages 20 --kills 20 --seed 1

A real Mosquitto with persistence, ``edge simulate`` in its own process at ``--rate`` events
per second (every priority present) through a fault proxy, and an independent witness
subscriber. The run is cut into one slot per fault, in a seeded random order: a broker
outage (stopped for 10-50 % of its slot) or a kill -9 of the runtime (restarted on the
same state directory after 0.5-5 s). At the end the backlog drains, SIGTERM stops the
runtime and the witness's arrivals are checked against the outbox (tools/chaos_harness.py).

Prints the figures (events, duplicates, max backlog, drain rate, loss) and writes them as
JSON (``--json``, default soak.json in the work directory). Exit 0 when the delivery
guarantee held, 1 when it did not (or mosquitto is not installed), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: the checkout's packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.bench.mosquitto import BrokerUnavailable
from tools.chaos_harness import ChaosRig, Load, fault_plan


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tools/soak.py", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run (30)")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second (100)")
    parser.add_argument("--outages", type=int, default=20, help="broker outages (20)")
    parser.add_argument("--kills", type=int, default=20, help="kill -9 of the runtime (20)")
    parser.add_argument("--seed", type=int, default=1, help="the faults' random order (1)")
    parser.add_argument("--workdir", type=Path, help="keep the broker's and outbox's files here")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if not args.minutes > 0 or args.rate <= 8 or args.outages < 0 or args.kills < 0:
        parser.error("--minutes must be > 0, --rate > 8, --outages and --kills >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    duration = args.minutes * 60
    faults = args.outages + args.kills
    slot = duration / max(1, faults)
    if faults and slot < 8:
        print(f"{faults} faults in {args.minutes:g} min leave {slot:.1f} s each; want >= 8",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return soak(args, duration, slot)
    except BrokerUnavailable as exc:  # no mosquitto, or it would not (re)start
        print(f"tools/soak.py: {exc}", file=sys.stderr)
        return 1


def soak(args: argparse.Namespace, duration: float, slot: float) -> int:
    """The run itself: 0 when the delivery guarantee held, 1 when it did not."""
    load = Load(rate=args.rate, alarm_cycles=min(1.0, args.rate / 40))
    with ChaosRig(args.workdir, load=load, seed=args.seed) as rig:
        rig.wait_for_events(20)
        plan = fault_plan(rig.rng, {"outage": args.outages, "kill": args.kills})
        start = time.monotonic()
        for index, kind in enumerate(plan):
            slot_start = start + index * slot
            _sleep_until(slot_start + rig.rng.uniform(0.1, 0.3) * slot)
            told = len(rig.timeline)
            if kind == "outage":
                rig.broker_outage(rig.rng.uniform(0.1, 0.5) * slot, hold_device=True)
            else:
                rig.kill(rig.rng.uniform(0.5, 5.0))
            print(f"fault {index + 1}/{len(plan)}:", *rig.timeline[told:], sep="\n", flush=True)
        _sleep_until(start + duration)
        report = rig.finish(drain_timeout=120)
        figures = report.as_json()
        figures["requested"] = {
            "minutes": args.minutes, "rate": args.rate, "outages": args.outages,
            "kills": args.kills, "seed": args.seed,
        }  # fmt: skip
        target = args.json or rig.workdir / "soak.json"
        target.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(report.explain() if not report.ok else report.summary())
        print(f"figures: {target}")
    return 0 if report.ok else 1


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
