"""What ``edge simulate`` does, start to summary, as a library call.

:func:`simulate` starts an embedded broker when none is given, loads the scenario with the
state directory and broker filled in, runs it on one or more devices with a console (and a
recording when asked, or when the scenario's labels are to be scored), watches what arrives
upstream through a :class:`~edge.cloud.sink.Sink`, and prints a summary per device: what
was read and stored, what arrived (distinct, duplicates, missing), jitter, power cuts, and
how the detections scored against the labels. Beyond :data:`EACH_UP_TO` devices (unless
``per_device``) it speaks for the fleet instead: a live line for all devices, totals, and
a summary line only for the devices that lack something. It returns the runs. The
``edge simulate`` command only turns its arguments into :class:`Options`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.cloud.sink import Sink
from edge.config.device import broker_problem
from edge.errors import BrokerRefused, UplinkError, UsageError
from edge.runtime.watcher import Watcher, Watchers
from edge.sim.console import Console, Printer
from edge.sim.labels import Score, pooled, score
from edge.sim.recording import Recording, RecordingData, read_recording, sensor_infos
from edge.sim.scenario import Scenario, labels, load_scenario
from edge.sim.simulator import DeviceRun, Simulator
from edge.sim.totals import Totals, live_line

NOT_DRAINED = "; outbox not drained before the timeout (events stay stored)"
LIVE_EVERY = 2.0  # real seconds between live status lines in real-time runs
EACH_UP_TO = 10  # devices that each get their own lines; beyond, the fleet's lines
SHOWN = 10  # devices that lack something, shown by name in a fleet's summary
QUIET = 5.0  # seconds without an arrival after which what is missing upstream is missing
EMBEDDED_UP_TO = 100  # devices the embedded broker serves without a word about --broker

Say = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class Options:
    """How to run a scenario; ``None`` takes the scenario's own value."""

    scenario: str | None = None  # a built-in name or a scenario file
    config: str | None = None  # or: simulate the hardware of this device config
    broker: str | None = None  # None: an embedded broker
    state_dir: str | None = None  # None: a temporary directory
    speed: str | None = None  # "X" times real time, or "max" (a virtual clock)
    duration: float | None = None
    seed: int | None = None
    devices: int = 1
    drain_timeout: float = 10.0
    record: str | None = None
    plot: str | None = None
    grace: float = 60.0
    quiet: bool = False
    per_device: bool = False  # every device's own lines, however many devices
    resend: bool = True  # send again from the outbox what the broker acknowledged and lost
    # [uplink] login and TLS keys for --broker (the devices' and the subscriber's login)
    login: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def check(self) -> None:
        """Options that cannot work together raise ``UsageError`` before anything starts."""
        if self.scenario and self.config:
            raise UsageError("give --scenario or --config, not both")
        if self.duration is not None and not self.duration > 0:
            raise UsageError(
                f"--duration: expected a positive number of seconds, found {self.duration}"
            )
        if self.devices < 1:
            raise UsageError(f"--devices: expected a positive number, found {self.devices}")
        for flag, seconds in (("--drain-timeout", self.drain_timeout), ("--grace", self.grace)):
            if not (seconds >= 0 and math.isfinite(seconds)):
                raise UsageError(f"{flag}: expected a number of seconds >= 0, found {seconds}")
        problem = broker_problem(self.broker) if self.broker else None
        if problem:
            raise UsageError(f"--broker: {problem}")
        if self.login and not self.broker:
            raise UsageError(
                "the login and TLS options need --broker (the embedded broker has no users)"
            )
        speed(self.speed, 1.0)


def _set(login: Mapping[str, Any]) -> dict[str, Any]:
    """The login keys given a value (a key set to None, such as password_env when a password
    file is given, keeps the scenario's own: a file and a variable both are then refused)."""
    return {key: value for key, value in login.items() if value is not None}


def speed(text: str | None, default: float) -> float | None:
    """The --speed value: a positive factor, or None for 'max' (virtual clock)."""
    if text is None:
        return default
    if text == "max":
        return None
    try:
        factor = float(text)
    except ValueError:
        factor = -1.0
    if not (factor > 0 and math.isfinite(factor)):
        raise UsageError(f"--speed: expected a positive number or 'max', found {text!r}")
    return factor


def simulate(options: Options, stop: threading.Event, say: Say = _print) -> list[DeviceRun]:
    """Run a scenario as ``edge simulate`` does; ``stop`` ends it early (SIGINT, SIGTERM)."""
    from edge.sim.broker import EmbeddedBroker  # amqtt: only when no broker is given

    options.check()
    temporary = None if options.state_dir else tempfile.mkdtemp(prefix="edgeline-sim-")
    state_dir = options.state_dir or temporary
    broker: EmbeddedBroker | None = None
    try:
        url = options.broker
        if url is None:
            broker = EmbeddedBroker().start()
            url = broker.url
        scenario = load_scenario(
            options.scenario,
            config_path=options.config,
            overrides={
                "storage": {"state_dir": state_dir},
                "uplink": {"broker": url, **_set(options.login)},
            },
        )
        return Session(scenario, options, stop, say, embedded=broker is not None).run()
    finally:
        if broker is not None:
            broker.close()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


class Session:
    """One ``edge simulate`` run of a loaded scenario: devices, console, sink, summary.

    The simulator's threads call the watchers; a live-status thread prints every
    :data:`LIVE_EVERY` seconds in real-time runs; everything else runs on the caller's.
    """

    def __init__(
        self,
        scenario: Scenario,
        options: Options,
        stop: threading.Event,
        say: Say = _print,
        *,
        embedded: bool = False,
    ) -> None:
        if options.seed is not None:
            settings = dataclasses.replace(scenario.settings, seed=options.seed)
            scenario = dataclasses.replace(scenario, settings=settings)
        self.scenario = scenario
        self.options = options
        self.stop = stop
        self.say = say
        self.embedded = embedded
        self.speed = speed(options.speed, scenario.settings.speed)
        self.duration = (
            options.duration if options.duration is not None else scenario.settings.duration
        )
        self.truth = labels(scenario)
        self.each = options.devices <= EACH_UP_TO or options.per_device  # a device's own lines
        self.consoles: dict[str, Console] = {}
        self.recordings: dict[str, Recording] = {}
        self.printer: Printer | None = None
        self._last_arrival = 0.0  # time.monotonic() of the latest event upstream

    def run(self) -> list[DeviceRun]:
        scratch = tempfile.mkdtemp(prefix="edgeline-rec-")  # when only a plot or a score is asked
        self.printer = Printer()  # every device's console lines, in one order
        try:
            return self._run(Path(scratch))
        finally:
            self.printer.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def _run(self, scratch: Path) -> list[DeviceRun]:
        options, config = self.options, self.scenario.config
        self.say(self._banner())
        if self.embedded and options.devices > EMBEDDED_UP_TO:
            self.say(
                f"the embedded broker runs in this process, in Python, and slows {options.devices}"
                " devices down: for more than 100, give Mosquitto as --broker"
            )
        sink = Sink(
            config.uplink.url,  # the preferred broker: a fallback's arrivals are not watched
            prefix=config.uplink.topic_prefix,
            device=config.device.id if options.devices == 1 else "+",
            on_event=self._upstream,
            on_status=self._status,
            login=config.uplink,  # the devices' user: they may read what they publish
        )
        try:
            sink.start()
        except BrokerRefused:
            raise  # a wrong login: the devices would be refused too
        except UplinkError as exc:  # the device runs without its broker: events wait on disk
            self.say(f"broker unreachable ({exc}); events are stored until it is back")
            sink.start(wait=False)
        simulator = Simulator(
            self.scenario,
            speed=self.speed,
            duration=self.duration,
            devices=options.devices,
            watcher=lambda device, t0: self._watcher(device, t0, scratch),
            stop=self.stop,
            on_start=self._started,
        )
        live = None
        if self.speed is not None and not options.quiet:
            live = threading.Thread(target=self._live, args=(simulator,), daemon=True)
            live.start()
        try:
            runs = simulator.run(drain_timeout=options.drain_timeout)
        finally:
            simulator.finished.set()
            if live is not None:
                live.join()
            for recording in self.recordings.values():
                recording.close()
        self._wait_upstream(runs, sink)
        recovered = {run.stream: self._recover(run, sink) for run in runs}
        sink.close()
        if self.each:
            for run in runs:
                self._summary(run, sink, recovered[run.stream])
        else:
            self._fleet_summary(runs, sink, recovered)
        if simulator.keys is not None and options.state_dir:
            self.say(f"command keys: {simulator.keys}/<device>.key")
        return runs

    def _wait_upstream(self, runs: list[DeviceRun], sink: Sink) -> None:
        """Wait until what each device stored has arrived, for as long as events keep
        arriving: a subscriber far behind a big fleet is slow, not lost. Once nothing has
        arrived for :data:`QUIET` seconds (half a second for a device whose outbox did not
        drain), what is missing is missing."""
        self._last_arrival = max(self._last_arrival, time.monotonic())
        for run in runs:
            device, quiet = run.scenario.config.device.id, QUIET if run.drained else 0.5
            while True:
                left = max(0.0, self._last_arrival + quiet - time.monotonic())
                if sink.wait_for(device, run.stream, run.last_seq, left, first=run.first_seq):
                    break
                if time.monotonic() - self._last_arrival >= quiet:
                    break

    def _recover(self, run: DeviceRun, sink: Sink) -> int:
        """Send again, from the outbox, what the broker acknowledged but the subscriber never
        got, and return how many; what ``edge outbox replay`` does for a cloud consumer.

        A broker that restarts without persistence forgets the messages it had acknowledged
        and not yet delivered, and its subscriptions: until the subscriber has subscribed
        again, what the device sends goes nowhere. The device did its part (the broker
        acknowledged every event of a drained run), so these are not the device's losses;
        the outbox keeps delivered events for replay (``[storage] keep_delivered``). A run
        not drained is left as it is: its missing events may still be waiting on disk."""
        from edge.clock import RealClock
        from edge.outbox.store import Outbox
        from edge.uplink.replay import republish

        device = run.scenario.config.device.id
        wanted = set(sink.received(device, run.stream).missing(run.last_seq, run.first_seq))
        if not self.options.resend or not run.drained or not wanted:
            return 0
        uplink = self.scenario.config.uplink  # the real broker, not a scenario's link proxy
        try:
            with Outbox.open_existing(run.scenario.config.storage.state_dir) as outbox:
                held = [e for e in outbox.stored(min(wanted), max(wanted)) if e.seq in wanted]
                if not held:
                    return 0
                self.say(
                    f"upstream{self._named(device)}: {len(held)} events the broker acknowledged"
                    " never reached the subscriber (a broker restart without persistence loses"
                    " them); sending them again from the outbox"
                )
                republish(uplink, device, held, clock=RealClock(assume_synced=True))
        except UplinkError as exc:
            self.say(f"upstream{self._named(device)}: could not send the missing again ({exc})")
            return 0
        sink.wait_for(device, run.stream, run.last_seq, 5.0, first=run.first_seq)
        return len(held)

    def _named(self, device: str) -> str:
        return f" {device}" if self.options.devices > 1 else ""

    def _banner(self) -> str:
        options, config, settings = self.options, self.scenario.config, self.scenario.settings
        where = "embedded broker at " if self.embedded else "broker "
        many = f" x {options.devices}" if options.devices > 1 else ""
        pace = "max" if self.speed is None else f"{self.speed:g}x"
        return (
            f"edgeline simulate: {self.scenario.name}, device {config.device.id}{many},"
            f" {self.duration:g} s at {pace} speed, seed {settings.seed},"
            f" {where}{', '.join(config.uplink.brokers)}, state in {config.storage.state_dir}"
        )

    def _watcher(self, scenario: Scenario, t0: float, scratch: Path) -> Watcher:
        options = self.options
        device = scenario.config.device.id
        prefix = f"{device} " if options.devices > 1 else ""
        quiet = options.quiet or not self.each  # a fleet's lines are the fleet's
        console = Console(t0, quiet=quiet, prefix=prefix, printer=self.printer)
        self.consoles[device] = console
        if not (options.record or options.plot or self.truth):
            return console
        path = per_device(options.record, device, options.devices) or scratch / f"{device}.jsonl"
        self.recordings[device] = Recording(
            path,
            t0,
            self.truth,
            name=scenario.name,
            device=device,
            seed=scenario.settings.seed,
            start_wall=scenario.settings.start_epoch,
            duration=self.duration,
        )
        return Watchers(console, self.recordings[device])

    def _started(self, run: DeviceRun) -> None:
        recording = self.recordings.get(run.scenario.config.device.id)
        if recording is not None:
            recording.describe(sensor_infos(run.runtime.sensors))

    def _upstream(self, topic: str, body: dict[str, Any], duplicate: bool) -> None:
        self._last_arrival = time.monotonic()  # the subscriber's thread; read by the waits
        console = self.consoles.get(str(body.get("device")))
        if console is not None:
            console.upstream(topic, body, duplicate)

    def _status(self, topic: str, body: dict[str, Any]) -> None:
        console = self.consoles.get(str(body.get("device")))
        if console is not None:
            console.status(topic, body)

    def _live(self, simulator: Simulator) -> None:
        """A status line every few seconds: readings/s, events, outbox depth, link state
        (each device's, or the fleet's)."""
        last: dict[str, int] = {}
        while not simulator.finished.wait(LIVE_EVERY):
            if not self.each:
                runs = list(simulator.runs)
                devices = self.options.devices
                self.say(live_line(runs, self.consoles, devices, LIVE_EVERY, last))
                continue
            for run in list(simulator.runs):
                device = run.scenario.config.device.id
                status = run.runtime.status()
                readings = status["readings"]
                rate = (readings - last.get(device, 0)) / LIVE_EVERY
                last[device] = readings
                depth = status["last_seq"] - status["acked"] + status["queued"]
                self.consoles[device].live(
                    f"{rate:.1f} readings/s, {status['last_seq']} events, outbox ~{depth}"
                    f" pending, link {status['link']}"
                )

    def _summary(self, run: DeviceRun, sink: Sink, recovered: int = 0) -> None:
        options = self.options
        device = run.scenario.config.device.id
        named = f" {device}" if options.devices > 1 else ""
        self.consoles[device].close()  # every line printed before the summary
        self.say(self._summary_line(run, sink, recovered))
        data = self._recorded(run)
        if data is None:
            return
        if self.truth:
            self.say(f"labels{named}: {self._score(data).summary()}")
        self._files(run, data)

    def _summary_line(self, run: DeviceRun, sink: Sink, recovered: int) -> str:
        device = run.scenario.config.device.id
        named = f" {device}" if self.options.devices > 1 else ""
        console = self.consoles[device]
        received = sink.received(device, run.stream)
        kinds = ", ".join(f"{n} {k}/{sev}" for (k, sev), n in sorted(console.events.items()))
        missing = len(received.missing(run.last_seq, first=run.first_seq))
        crashes = f"; {run.crashes} power cut(s)" if run.crashes else ""
        again = f" ({recovered} sent again from the outbox)" if recovered else ""
        return (
            f"summary{named}: {console.readings} readings; "
            f"{sum(console.events.values())} events stored ({kinds or 'none'}); stream "
            f"{run.stream} at seq {run.last_seq}; upstream received {len(received.seqs)} "
            f"distinct, {received.duplicates} duplicates, {missing} missing{again}; sampling "
            f"jitter p99 {run.jitter_p99 * 1000:.2f} ms over {run.polls} polls{crashes}"
            f"{'' if run.drained else NOT_DRAINED}"
        )

    def _fleet_summary(self, runs: list[DeviceRun], sink: Sink, recovered: dict[str, int]) -> None:
        """Totals for the fleet, then a summary line for each device that lacks something
        (events missing upstream, an outbox not drained), the first :data:`SHOWN` of them."""
        if self.printer is not None:
            self.printer.flush()  # every line printed before the summary
        totals = Totals()
        for run in runs:
            device = run.scenario.config.device.id
            received = sink.received(device, run.stream)
            totals.add(run, self.consoles[device], received, recovered[run.stream])
        self.say(totals.line())
        lacking = totals.lacking
        for run in lacking[:SHOWN]:
            self.say(self._summary_line(run, sink, recovered[run.stream]))
        if len(lacking) > SHOWN:
            more = len(lacking) - SHOWN
            self.say(f"and {more} more devices lacking events (--per-device lists every device)")
        scores, recorded = [], 0
        for run in runs:  # one recording read at a time
            data = self._recorded(run)
            if data is None:
                continue
            recorded += 1
            if self.truth:
                scores.append(self._score(data))
            self._files(run, data, say=False)
        if scores:
            self.say(f"labels ({len(scores)} devices): {pooled(scores).summary()}")
        for kind, path in (("plots", self.options.plot), ("recordings", self.options.record)):
            if path:  # one file per device, named as the first one is
                self.say(f"{kind}: {recorded} files, {per_device(path, '<device>', 2)}")

    def _recorded(self, run: DeviceRun) -> RecordingData | None:
        """What the device's recording holds, when it has one (asked, or for the labels)."""
        kept = self.recordings.get(run.scenario.config.device.id)
        return None if kept is None else read_recording(kept.path)

    def _score(self, data: RecordingData) -> Score:
        return score(self.truth, data.events, grace=self.options.grace, duration=self.duration)

    def _files(self, run: DeviceRun, data: RecordingData, *, say: bool = True) -> None:
        """The device's plot (drawn now) and recording, when asked; ``say`` where they are."""
        from edge.sim.plot import plot  # matplotlib: only when a plot is asked

        device = run.scenario.config.device.id
        target = per_device(self.options.plot, device, self.options.devices)
        if target is not None:
            plot(data, target)
            if say:
                self.say(f"plot: {target}")
        if self.options.record and say:
            self.say(f"recording: {self.recordings[device].path}")


def per_device(path: str | None, device: str, count: int) -> Path | None:
    """The file for one device: as given for a single device, else with the id added."""
    if path is None:
        return None
    target = Path(path)
    return target if count == 1 else target.with_name(f"{target.stem}-{device}{target.suffix}")
