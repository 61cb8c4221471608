"""Runs a scenario: simulated devices, their runtimes, the broker link, and what happened.

Each device gets its own clock (virtual at ``--speed max``, scaled real time otherwise),
simulated hardware and an unchanged ``Runtime``; a network injection cuts the device's
link through a ``LinkProxy``; a power cut stops the runtime at once (``Runtime.crash``) and
starts a new one on the same state directory after ``down`` seconds. At the end the
outbox drains upstream (bounded) and a report compares what happened with the labels.

A device costs its runtime's own threads and nothing more, so a thousand fit in one
process. One thread, the caller's, runs them all (:class:`_Loop`): a few builder threads
make the devices just ahead of their turn; the loop starts them one after another, at
most ``start_rate`` a second (a broker is not met with a thousand CONNECTs at once, and
the first devices run while the last are built); a task on each device's own scheduler
says when its sampling reached a power cut or the end; the loop crashes and boots a
device for each cut, and hands a device whose sampling is over to a few finishing
threads, which drain its outbox and close it.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.clock import Clock, ScaledClock, VirtualClock
from edge.runtime.runtime import Runtime
from edge.runtime.watcher import Watcher, Watchers
from edge.sim.fleet import allow_open_files, check_disk, keys_dir, with_command_key
from edge.sim.hardware import SimulatedHardware
from edge.sim.mcu import with_mcu_ports
from edge.sim.scenario import Injection, Scenario

START_RATE = 200.0  # devices started per real second, at most
BUILDERS = 4  # threads building devices ahead of their start (disk waits overlap)
FINISHERS = 32  # threads draining and closing the devices whose sampling is over
TICK = 0.2  # real seconds between looks at the stop event


@dataclass
class DeviceRun:
    """One simulated device and what it did."""

    scenario: Scenario
    clock: Clock
    hardware: SimulatedHardware
    watcher: Watcher
    runtime: Runtime
    t0: float
    proxy: Any = None  # LinkProxy when the scenario cuts the network
    crashes: int = 0
    last_seq: int = 0
    stream: str = ""
    first_seq: int = 1  # the first seq this run makes (a resumed outbox has earlier ones)
    drained: bool = True
    polls: int = 0
    jitter_p99: float = 0.0
    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    cuts: list[Injection] = field(default_factory=list)  # power cuts still ahead, in order
    end: float = 0.0  # the clock's time when sampling ends
    index: int = 0  # of the device, from 0


def clock_for(scenario: Scenario, speed: float | None) -> Clock:
    """A virtual clock the scheduler drives (``speed`` None), or scaled real time."""
    start = scenario.settings.start_epoch
    if speed is None:
        return VirtualClock(start_wall=start)
    return ScaledClock(speed, start_wall=start)


def for_device(scenario: Scenario, index: int, count: int, state_dir: Path) -> Scenario:
    """The scenario of device ``index`` of ``count``: its own id and state directory, and
    its own metrics textfile (``<name>-<device>.prom``) and port (the port + ``index``)."""
    if count == 1:
        return scenario
    config = scenario.config
    device = dataclasses.replace(config.device, id=f"{config.device.id}-{index + 1:03d}")
    storage = dataclasses.replace(config.storage, state_dir=str(state_dir / device.id))
    settings = dataclasses.replace(scenario.settings, seed=scenario.settings.seed + index)
    metrics = config.metrics
    if metrics.textfile is not None:
        textfile = Path(metrics.textfile)
        named = textfile.with_name(f"{textfile.stem}-{device.id}{textfile.suffix}")
        metrics = dataclasses.replace(metrics, textfile=str(named))
    if metrics.port is not None:
        metrics = dataclasses.replace(metrics, port=metrics.port + index)
    config = dataclasses.replace(config, device=device, storage=storage, metrics=metrics)
    return dataclasses.replace(scenario, config=config, settings=settings)


class Simulator:
    """Runs one scenario on one or more simulated devices until ``duration``.

    ``run`` drives the devices from the caller's thread (see the module doc); ``watcher``
    and ``on_start`` are called on the builder threads, a device's watcher on its
    runtime's threads.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        speed: float | None,
        duration: float,
        devices: int = 1,
        watcher: Callable[[Scenario, float], Watcher] | None = None,
        stop: threading.Event | None = None,
        on_start: Callable[[DeviceRun], None] | None = None,
        start_rate: float = START_RATE,
    ) -> None:
        self.scenario = scenario
        self.speed = speed
        self.duration = duration
        self.count = devices
        self.make_watcher = watcher or (lambda scenario, t0: Watcher())
        self.stop = stop or threading.Event()
        self.on_start = on_start  # called once per device, after its first runtime is built
        self.start_rate = start_rate
        self.runs: list[DeviceRun] = []
        self.finished = threading.Event()  # set by whoever waits for run() to return

    @property
    def keys(self) -> Path | None:
        """Where the devices' command keys are (several devices), else None."""
        if self.count == 1:
            return None
        return keys_dir(self.scenario.config.storage.state_dir)

    # -- building -------------------------------------------------------------------------

    def _start_device(self, index: int) -> DeviceRun:
        base = Path(self.scenario.config.storage.state_dir)
        scenario = with_mcu_ports(for_device(self.scenario, index, self.count, base))
        if self.keys is not None:
            scenario = with_command_key(scenario, self.keys)
        proxy = None
        if any(i.kind == "network" for i in scenario.injections):
            scenario, proxy = _through_proxy(scenario)
        clock = clock_for(scenario, self.speed)
        t0 = clock.monotonic()
        hardware = SimulatedHardware(scenario, clock)
        watcher = self.make_watcher(scenario, t0)
        run = DeviceRun(scenario, clock, hardware, watcher, self._runtime(scenario, clock,
                        hardware, watcher), t0, proxy)  # fmt: skip
        run.first_seq = run.runtime.outbox.last_seq + 1
        run.end = t0 + self.duration
        run.index = index
        cuts = sorted(_power_cuts(scenario), key=lambda i: i.at)
        run.cuts = [cut for cut in cuts if t0 + cut.at < run.end]
        self._schedule(run)
        if self.on_start is not None:
            self.on_start(run)
        return run

    def _runtime(
        self, scenario: Scenario, clock: Clock, hardware: SimulatedHardware, watcher: Watcher
    ) -> Runtime:
        return Runtime(
            scenario.config,
            hardware=hardware.hardware,
            clock=clock,
            drive_clock=self.speed is None,
            watcher=watcher,
        )

    def _schedule(self, run: DeviceRun) -> None:
        """Stimuli and injections still ahead, on the (new) runtime's scheduler."""
        now = run.clock.monotonic() - run.t0 if run.crashes else 0.0
        scheduler = run.runtime.scheduler
        devices = {sensor_id: r.device for sensor_id, r in run.runtime.sensors.items()}
        run.hardware.schedule(scheduler, after=now, devices=devices)
        if run.proxy is not None:
            run.proxy.restore()  # an outage that ended while the power was off is over
        for injection in run.scenario.injections:
            if injection.kind == "network" and injection.end > now and run.proxy is not None:
                cut_at = max(injection.at, now)
                scheduler.at("cut", run.t0 + cut_at, _call(run.proxy.cut))
                scheduler.at("restore", run.t0 + injection.end, _call(run.proxy.restore))

    # -- running --------------------------------------------------------------------------

    def run(self, *, drain_timeout: float = 10.0) -> list[DeviceRun]:
        """Run every device to the end of the scenario, then let the outboxes drain."""
        self.runs = []
        if self.count > 1:
            allow_open_files(self.count)
            base = Path(self.scenario.config.storage.state_dir)
            ids = [for_device(self.scenario, i, self.count, base).config.device.id
                   for i in range(self.count)]  # fmt: skip
            check_disk(base, ids, self.scenario.config.storage)
        with (
            ThreadPoolExecutor(BUILDERS, thread_name_prefix="edgeline-build") as builders,
            ThreadPoolExecutor(FINISHERS, thread_name_prefix="edgeline-finish") as finishers,
        ):
            loop = _Loop(self, builders, finishers, drain_timeout)
            try:
                loop.drive()
            except BaseException:
                loop.abandon()
                raise
        for finished in loop.finishing:
            finished.result()  # a finishing thread's failure is raised here
        self.runs.sort(key=lambda run: run.index)
        return self.runs

    def _sample(self, run: DeviceRun, ended: Callable[[DeviceRun], None]) -> None:
        """Start sampling up to the next power cut or the end; a task of the device's own
        scheduler, its last, calls ``ended`` when it gets there (the sampling thread)."""
        until = run.t0 + run.cuts[0].at if run.cuts else run.end
        run.runtime.scheduler.at("simulator", until, lambda due: ended(run))
        run.runtime.start(until=until)

    def _crash(self, run: DeviceRun) -> None:
        """A power cut: everything stops at once (the new runtime boots after ``down``)."""
        self._collect(run)
        if isinstance(run.clock, VirtualClock):
            # Virtual time ran far ahead of the recorder's real-time group commits; on a
            # device all but the last commit window would be on disk by now.
            run.runtime.recorder.flush()
        run.runtime.crash()
        run.crashes += 1

    def _boot(self, run: DeviceRun) -> None:
        """A new runtime on the device's state directory, with what is still ahead."""
        run.runtime = self._runtime(run.scenario, run.clock, run.hardware, run.watcher)
        self._schedule(run)

    def _wind_down(self, run: DeviceRun, deadline: float, stopped: bool) -> None:
        """Wait for sampling to end, drain until ``deadline`` (``time.monotonic()``) unless
        stopped early, close (a finishing thread)."""
        try:
            while not run.runtime.sampling_done(TICK):
                if self.stop.is_set():
                    run.runtime.scheduler.stop()
            if stopped:  # no drain, but say whether events stay stored
                run.runtime.recorder.flush(timeout=1.0)
                run.drained = not run.runtime.outbox.has_pending()
            else:
                run.drained = run.runtime.drain(deadline - time.monotonic())
        finally:
            self._finish(run)

    def _collect(self, run: DeviceRun) -> None:
        jitter = run.runtime.scheduler.jitter()
        run.polls += jitter.polls
        run.jitter_p99 = max(run.jitter_p99, jitter.p99)

    def _finish(self, run: DeviceRun) -> None:
        self._collect(run)
        run.runtime.close()
        run.hardware.close()
        run.last_seq = run.runtime.outbox.last_seq
        run.stream = run.runtime.outbox.stream
        if run.proxy is not None:
            run.proxy.close()

    def watchers(self) -> Sequence[Watcher]:
        return [run.watcher for run in self.runs]


class _Loop:
    """One ``Simulator.run``: every device from built to handed over (the caller's thread).

    Builds done and sampling ended come in on one queue (``_news``): a builder thread puts
    the future of a device it built, a device's sampling thread puts the device whose
    sampling reached a power cut or the end. A device down for a power cut on a real-time
    clock waits in a heap for its boot.
    """

    def __init__(
        self,
        simulator: Simulator,
        builders: ThreadPoolExecutor,
        finishers: ThreadPoolExecutor,
        drain_timeout: float,
    ) -> None:
        self.sim = simulator
        self.builders = builders
        self.finishers = finishers
        self.drain_timeout = drain_timeout
        self.finishing: list[Future[None]] = []
        self._news: queue.SimpleQueue[Future[DeviceRun] | DeviceRun] = queue.SimpleQueue()
        self._submitted = 0  # builds asked for
        self._building = 0  # builds asked for and not yet taken in
        self._ready: deque[DeviceRun] = deque()  # built, waiting for their turn to start
        self._live: dict[int, DeviceRun] = {}  # by id(): sampling, or down for a power cut
        self._boots: list[tuple[float, int, DeviceRun]] = []  # (real time, order, run): a heap
        self._order = itertools.count()

    def drive(self) -> None:
        """Start the devices, see each through its power cuts, hand each to a finisher."""
        sim = self.sim
        next_start = time.monotonic()
        while self._submitted < sim.count or self._building or self._ready or self._live:
            self._build_ahead()
            if sim.stop.is_set():
                self._stop_all()
                return
            self._take(wait=0.0)  # what ended meanwhile goes before the next start
            now = time.monotonic()
            while self._boots and self._boots[0][0] <= now:
                self._boot(heapq.heappop(self._boots)[2])
            if self._ready and now >= next_start:
                self._start(self._ready.popleft())
                next_start = max(now, next_start + 1.0 / sim.start_rate)
                continue
            wait = TICK
            if self._ready:
                wait = min(wait, next_start - now)
            if self._boots:
                wait = min(wait, self._boots[0][0] - now)
            self._take(wait=max(0.0, wait))

    def abandon(self) -> None:
        """After a failure: every device built so far is closed where it is, undrained."""
        self.builders.shutdown(wait=True, cancel_futures=True)
        self._take_builds()
        self.sim.runs.extend(self._ready)
        for run in self._live.values():  # down for a power cut too: its runtime crashed
            run.runtime.scheduler.stop()
        closing = [*self._ready, *self._live.values()]
        self.finishing.extend(self.finishers.submit(self.sim._finish, run) for run in closing)

    def _stop_all(self) -> None:
        """Stopped early (SIGINT, SIGTERM): no more builds. Every device built starts (one
        down for a power cut boots), and goes to a finisher, which stops its sampling a
        moment later: nothing is drained."""
        self.builders.shutdown(wait=True)  # the few builds asked for
        self._take_builds()
        while self._ready:
            self._start(self._ready.popleft())
        while self._boots:
            self._boot(heapq.heappop(self._boots)[2])
        for run in list(self._live.values()):
            self._hand_over(run, stopped=True)

    def _build_ahead(self) -> None:
        while self._submitted < self.sim.count and self._building + len(self._ready) < 2 * BUILDERS:
            building = self.builders.submit(self.sim._start_device, self._submitted)
            building.add_done_callback(self._news.put)
            self._submitted += 1
            self._building += 1

    def _take(self, *, wait: float) -> None:
        """Take in the builds done and the sampling ended, waiting up to ``wait`` seconds
        for the first."""
        try:
            news = self._news.get(timeout=wait) if wait > 0 else self._news.get_nowait()
            while True:
                if isinstance(news, Future):
                    self._building -= 1
                    self._ready.append(news.result())  # a build's failure is raised here
                else:
                    self._ended(news)
                news = self._news.get_nowait()
        except queue.Empty:
            return

    def _take_builds(self) -> None:
        """The builds done, once the builders have stopped (what else came stays)."""
        others = []
        while not self._news.empty():
            news = self._news.get_nowait()
            if not isinstance(news, Future):
                others.append(news)
            elif not news.cancelled() and news.exception() is None:
                self._ready.append(news.result())
        for run in others:
            self._news.put(run)

    def _start(self, run: DeviceRun) -> None:
        self.sim.runs.append(run)
        self._live[id(run)] = run
        self.sim._sample(run, self._news.put)

    def _ended(self, run: DeviceRun) -> None:
        """The device's sampling reached a power cut, or the end."""
        run.runtime.sampling_done()  # it ran its last task: the thread is ending
        if not run.cuts:
            self._hand_over(run, stopped=False)
            return
        cut = run.cuts.pop(0)
        self.sim._crash(run)
        if isinstance(run.clock, VirtualClock):
            run.clock.advance(cut.down)
            self._boot(run)
        else:  # real time, scaled: it boots when the time comes
            due = time.monotonic() + cut.down / (self.sim.speed or 1.0)
            heapq.heappush(self._boots, (due, next(self._order), run))

    def _boot(self, run: DeviceRun) -> None:
        self.sim._boot(run)
        self.sim._sample(run, self._news.put)

    def _hand_over(self, run: DeviceRun, *, stopped: bool) -> None:
        """To a finisher; the drain's time runs from now, however long the device queues."""
        self._live.pop(id(run), None)
        deadline = time.monotonic() + self.drain_timeout
        self.finishing.append(self.finishers.submit(self.sim._wind_down, run, deadline, stopped))


def _power_cuts(scenario: Scenario) -> list[Injection]:
    return [i for i in scenario.injections if i.kind == "power-cut"]


def _through_proxy(scenario: Scenario) -> tuple[Scenario, Any]:
    """Route the device's uplink through a fault proxy the scenario can cut."""
    from edge.sim.linkproxy import LinkProxy

    uplink = scenario.config.uplink
    proxy = LinkProxy(uplink.host, uplink.port).start()
    config = dataclasses.replace(
        scenario.config, uplink=dataclasses.replace(uplink, broker=proxy.url)
    )
    return dataclasses.replace(scenario, config=config), proxy


def _call(action: Callable[[], Any]) -> Callable[[float], None]:
    def act(due: float) -> None:
        action()

    return act


__all__ = ["DeviceRun", "Simulator", "Watchers", "clock_for", "for_device"]
