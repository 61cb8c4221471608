"""Runs a scenario: simulated devices, their runtimes, the broker link, and what happened.

Each device gets its own clock (virtual at ``--speed max``, scaled real time otherwise),
simulated hardware and an unchanged ``Runtime``; a network injection cuts the device's
link through a ``LinkProxy``; a power cut stops the runtime at once (``Runtime.crash``) and
starts a new one on the same state directory after ``down`` seconds. At the end the
outbox drains upstream (bounded) and a report compares what happened with the labels.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.clock import Clock, ScaledClock, VirtualClock
from edge.runtime.runtime import Runtime
from edge.runtime.watcher import Watcher, Watchers
from edge.sim.hardware import SimulatedHardware
from edge.sim.mcu import with_mcu_ports
from edge.sim.scenario import Injection, Scenario


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
    """Runs one scenario on one or more simulated devices until ``duration``."""

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
    ) -> None:
        self.scenario = scenario
        self.speed = speed
        self.duration = duration
        self.count = devices
        self.make_watcher = watcher or (lambda scenario, t0: Watcher())
        self.stop = stop or threading.Event()
        self.on_start = on_start  # called once per device, after its first runtime is built
        self.runs: list[DeviceRun] = []
        self.finished = threading.Event()  # set by whoever waits for run() to return

    # -- building -------------------------------------------------------------------------

    def _start_device(self, index: int) -> DeviceRun:
        base = Path(self.scenario.config.storage.state_dir)
        scenario = with_mcu_ports(for_device(self.scenario, index, self.count, base))
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
        try:
            for index in range(self.count):
                self.runs.append(self._start_device(index))
        except BaseException:
            for run in self.runs:  # the devices already built: their outboxes and proxies
                self._finish(run)
            raise
        threads = [
            threading.Thread(target=self._run_device, args=(run, drain_timeout), daemon=True)
            for run in self.runs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
        return self.runs

    def _run_device(self, run: DeviceRun, drain_timeout: float) -> None:
        end = run.t0 + self.duration
        try:
            for cut in sorted(_power_cuts(run.scenario), key=lambda i: i.at):
                at = run.t0 + cut.at
                if at >= end or not self._sample(run, at):
                    break
                self._power_cut(run, cut)
            if self._sample(run, end):
                run.drained = run.runtime.drain(drain_timeout)
            else:  # stopped early: no drain, but say whether events stay stored
                run.runtime.recorder.flush(timeout=1.0)
                run.drained = not run.runtime.outbox.has_pending()
        finally:
            self._finish(run)

    def _sample(self, run: DeviceRun, until: float) -> bool:
        """Sample up to ``until``; False when stopped early (SIGINT)."""
        if run.runtime._thread is None:
            run.runtime.start(until=until)
        else:
            run.runtime.sample(until=until)
        while not run.runtime.sampling_done(0.2):
            if self.stop.is_set():
                run.runtime.scheduler.stop()
        return not self.stop.is_set()

    def _power_cut(self, run: DeviceRun, cut: Injection) -> None:
        """Everything stops at once; after ``down`` seconds a new runtime boots."""
        self._collect(run)
        if isinstance(run.clock, VirtualClock):
            # Virtual time ran far ahead of the recorder's real-time group commits; on a
            # device all but the last commit window would be on disk by now.
            run.runtime.recorder.flush()
        run.runtime.crash()
        run.crashes += 1
        if isinstance(run.clock, VirtualClock):
            run.clock.advance(cut.down)
        else:
            run.clock.wait(self.stop, run.clock.monotonic() + cut.down)
        run.runtime = self._runtime(run.scenario, run.clock, run.hardware, run.watcher)
        self._schedule(run)

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
