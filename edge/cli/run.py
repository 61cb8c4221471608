"""``edge run``: the device service, on the real GPIO and I2C hardware."""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from typing import TYPE_CHECKING, Any

from edge.cli.common import EXIT_OK, stop_on_signals

if TYPE_CHECKING:
    from edge.config.device import Config
    from edge.runtime.runtime import Runtime

STATUS_EVERY = 60  # seconds between status lines in the log of `edge run`
NOTIFY_EVERY = 5  # seconds between STATUS lines to systemd (`systemctl status edgeline`)

log = logging.getLogger("edge")


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run on the device's real GPIO and I2C hardware",
        description="Run the runtime on this device's real GPIO (gpiozero's default pin"
        " factory) and I2C (smbus2) until SIGINT or SIGTERM; then commit every pending event,"
        " publish offline and exit 0.",
    )
    run.add_argument("--config", required=True, metavar="FILE", help="the device's TOML config")
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from gpiozero.exc import PinFactoryFallback

    from edge.clock import RealClock
    from edge.config.device import load
    from edge.errors import HardwareMissing
    from edge.runtime.hardware import RealHardware
    from edge.runtime.reconfigure import Reconfigurer
    from edge.runtime.runtime import Runtime
    from edge.runtime.systemd import Notifier
    from sensors.errors import NoPinFactory, NoSerialLibrary, SensorError

    config = load(args.config)
    clock = RealClock(assume_synced=config.device.rtc)
    stop = stop_on_signals()
    notifier = Notifier()  # systemd's Type=notify; a no-op elsewhere
    with RealHardware(clock) as hardware:

        def build(config: Config) -> Runtime:  # the first runtime, and one per remote config
            return Runtime(config, hardware=hardware.hardware, clock=clock, notifier=notifier)

        with warnings.catch_warnings(record=True) as fallbacks:
            # gpiozero warns for each pin library it could not load before the one it uses:
            # detail for --log-level debug, not four warnings at every start.
            warnings.simplefilter("always", PinFactoryFallback)
            try:
                runtime = build(config)
            except HardwareMissing as exc:  # no I2C bus: the message says how to enable it
                raise HardwareMissing(
                    f"{exc}, or try `edge simulate --config {args.config}` on a machine"
                    " without this hardware"
                ) from exc
            except SensorError as exc:  # the config needs hardware this machine lacks
                if isinstance(exc, NoPinFactory):
                    fix = (
                        "install lgpio (sudo apt install python3-lgpio on Raspberry Pi OS, in"
                        " a venv made with --system-site-packages; or pip install lgpio in the"
                        " venv), add the user to the gpio group, or"
                    )
                elif isinstance(exc, NoSerialLibrary):
                    fix = "install it (pip install pyserial in the venv), or"
                else:
                    fix = "check the wiring and the config, or"
                raise HardwareMissing(
                    f"{exc}: {fix} try `edge simulate --config {args.config}` on a machine"
                    " without this hardware"
                ) from exc
            finally:
                for fallback in fallbacks:
                    log.debug("gpiozero: %s", fallback.message)
        # The service owns the runtime: a remote config (the `config` command) replaces it.
        service = Reconfigurer(args.config, build)
        try:
            service.start(runtime)
            log.info("running: %s", config.summary())
            rate = Rate(runtime)
            notifier.ready(rate.line())
            beats = 0

            def tick(running: Runtime) -> None:
                nonlocal beats
                beats += 1
                rate.runtime = running
                if beats % NOTIFY_EVERY == 0:
                    notifier.status(rate.line())
                if beats % STATUS_EVERY == 0:  # readings, seq, backlog, link, jitter
                    log.info("status: %s", json.dumps(running.status()))

            service.serve(stop, tick)
        finally:
            notifier.stopping()
            service.close()
            notifier.close()
        runtime = service.runtime or runtime
    log.info("stopped cleanly: %s", json.dumps(runtime.status()))
    return EXIT_OK


class Rate:
    """The STATUS line systemd shows: readings/s since the last line, outbox depth, link
    state and the broker it is on."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._last = (runtime.clock.monotonic(), 0)

    def line(self) -> str:
        status = self.runtime.status()
        now, readings = self.runtime.clock.monotonic(), status["readings"]
        then, before = self._last
        self._last = (now, readings)
        per_s = (readings - before) / (now - then) if now > then else 0.0
        pending = self.runtime.outbox.stats().pending
        return (
            f"sampling {per_s:.1f} readings/s; outbox {pending} pending;"
            f" link {status['link']}, broker {status['broker'] or '-'}"
        )
