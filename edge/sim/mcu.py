"""The simulated MCU behind a ``serial.mcu`` sensor in ``edge simulate``: a real pty (its
symlink in the state directory, where the sensor's ``port`` is pointed), channels fed by the
scenario's signals, and the line's faults from its injections.

One clock: the MCU counts the runtime's clock (virtual at ``--speed max``), and the runtime's
link stamps with the same clock. It sends from tasks on the runtime's scheduler, as that
clock advances; the pty is real, so after each send the task waits (real time, bounded)
until the link has handed on every reading and block sent intact, and after a reopen until
the link has asked for HELLO. A virtual clock therefore stands still while the bytes
travel: every reading the MCU sends intact reaches the runtime at the instant it was sent,
and none is still on the wire when the run ends.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.runtime.scheduler import Scheduler
from edge.sim.scenario import Injection, McuChannelSim, McuSim, Scenario
from firmware_bridge.messages import Channel
from firmware_bridge.sim import SimulatedMcu

log = logging.getLogger(__name__)

SEND_WAIT_S = 2.0  # real seconds a send waits for the link to read it
HELLO_WAIT_S = 5.0  # real seconds a (re)opened port waits for the link's HELLO_REQUEST
HIT_EVERY = 4  # a line fault hits one frame in this many sent during it


def port_for(state_dir: str, sensor: str) -> Path:
    return Path(state_dir) / "mcu" / sensor


def with_mcu_ports(scenario: Scenario) -> Scenario:
    """The scenario with each serial.mcu sensor's ``port`` pointed at its simulated MCU's
    pty (a symlink in the state directory)."""
    config = scenario.config
    sensors = tuple(
        dataclasses.replace(
            sensor,
            params=dataclasses.replace(
                sensor.params, port=str(port_for(config.storage.state_dir, sensor.id))
            ),
        )
        if sensor.type == "serial.mcu"
        else sensor
        for sensor in config.sensors
    )
    return dataclasses.replace(scenario, config=dataclasses.replace(config, sensors=sensors))


def mcu_spec(scenario: Scenario, sensor: Any) -> McuSim:
    """The simulated MCU of a serial.mcu sensor: the scenario's, or one READING a second
    for each channel the sensor's config names."""
    spec = scenario.mcus.get(sensor.id, McuSim())
    if not spec.channels:
        channels = tuple(
            McuChannelSim(c.mcu, c.unit or "", every=1.0) for c in sensor.params.channels
        )
        spec = dataclasses.replace(spec, channels=channels)
    if not spec.outputs:
        spec = dataclasses.replace(spec, outputs=tuple(sensor.params.outputs))
    return spec


class DrivenMcu:
    """One simulated MCU, sending on the runtime's scheduler (its thread) what the
    scenario's signals say. ``signal(channel)`` gives a channel's value at a clock time."""

    def __init__(
        self,
        sensor: str,
        spec: McuSim,
        signal: Callable[[str], Callable[[float], float]],
        clock: Callable[[], float],
        port: Path,
        *,
        seed: int = 0,
    ) -> None:
        self.sensor = sensor
        self.spec = spec
        self.clock = clock
        channels = [Channel(i, c.name, c.unit) for i, c in enumerate(spec.channels)]
        self.mcu = SimulatedMcu(port, channels, spec.outputs, clock, seed=seed)
        self.signals = {c.name: signal(c.name) for c in spec.channels}
        self.faults: set[str] = set()
        self.link: Any = None  # the runtime's McuLink, once a runtime is scheduled
        self._sends = 0
        self._intact_base = self._delivered_base = 0
        self.mcu.open()

    def close(self) -> None:
        self.mcu.close()

    # -- scheduling ------------------------------------------------------------------------

    def schedule(
        self, scheduler: Scheduler, t0: float, injections: tuple[Injection, ...], after: float,
        link: Any,
    ) -> None:  # fmt: skip
        """Send on ``scheduler`` from ``after`` seconds on; ``link`` is the runtime's."""
        self.link = link
        self.mcu.greeted.clear()  # a new runtime asks HELLO anew: wait for it
        self._count_from_now()
        for index, channel in enumerate(self.spec.channels):
            name = f"mcu-{self.sensor}-{channel.name}"
            if channel.every is not None:
                scheduler.every(name, channel.every, self._reading(index, channel))
            else:
                assert channel.rate is not None
                span = channel.block / channel.rate
                scheduler.every(name, span, self._samples(index, channel), first=span)
        scheduler.every(f"mcu-{self.sensor}-heartbeat", self.spec.heartbeat, self._heartbeat)
        for injection in injections:
            if injection.kind != "fault" or injection.sensor != self.sensor:
                continue
            if injection.end <= after:
                continue
            start = t0 + max(injection.at, after)
            scheduler.at(f"mcu-{injection.fault}", start, self._begin(injection))
            scheduler.at(f"mcu-{injection.fault}-end", t0 + injection.end, self._end(injection))

    def _reading(self, index: int, channel: McuChannelSim) -> Callable[[float], None]:
        signal = self.signals[channel.name]

        def send(due: float) -> None:
            self._before_send()
            self.mcu.reading(index, signal(due), at=due)
            self._settle()

        return send

    def _samples(self, index: int, channel: McuChannelSim) -> Callable[[float], None]:
        signal = self.signals[channel.name]
        assert channel.rate is not None
        period = 1.0 / channel.rate
        offsets = (np.arange(channel.block) - (channel.block - 1)) * period

        def send(due: float) -> None:  # the block whose last sample is at ``due``
            times = due + offsets
            times = times[times >= self.mcu.booted_at]  # none from before a restart
            if not len(times):
                return
            values = np.fromiter((signal(t) for t in times), dtype=np.float32, count=len(times))
            self._before_send()
            self.mcu.samples(index, float(times[0]), period, values)
            self._settle()

        return send

    def _heartbeat(self, due: float) -> None:
        self._before_send()
        self.mcu.heartbeat()
        self._settle()

    # -- faults ------------------------------------------------------------------------------

    def _begin(self, injection: Injection) -> Callable[[float], None]:
        def begin(due: float) -> None:
            fault = injection.fault
            if fault == "vanish":
                self.mcu.close()
                self._wait(lambda: self.link is None or not self.link.online, SEND_WAIT_S)
            elif fault == "reboot":
                self.mcu.reboot()
                self._settle()
            elif fault == "drift":
                assert injection.ppm is not None
                self.mcu.set_drift(injection.ppm)
            elif fault is not None:
                self.faults.add(fault)

        return begin

    def _end(self, injection: Injection) -> Callable[[float], None]:
        def end(due: float) -> None:
            fault = injection.fault
            if fault == "vanish":
                self.mcu.open()
            elif fault == "drift":
                self.mcu.set_drift(0.0)
            elif fault is not None:
                self.faults.discard(fault)

        return end

    def _before_send(self) -> None:
        """Wait for a HELLO on a port just (re)opened; put this send's line fault on."""
        mcu = self.mcu
        waiting = mcu.is_open and not mcu.greeted.is_set() and self.link is not None
        if waiting and not mcu.greeted.wait(HELLO_WAIT_S):
            log.warning("simulated MCU %s: no HELLO_REQUEST in %g s", self.sensor, HELLO_WAIT_S)
        if not self.faults:
            return
        self._sends += 1
        if self._sends % HIT_EVERY:
            return
        if "garbage" in self.faults:
            mcu.garbage(48)
        if "corrupt" in self.faults:
            mcu.corrupt_next()
        elif "truncate" in self.faults:
            mcu.truncate_next()

    def _settle(self) -> None:
        """Wait (real time) until the link has handed on every reading and block sent
        intact since it was scheduled: what a correct decoder can take from the line."""
        link = self.link
        if link is None:
            return
        due = self._delivered_base + len(self.mcu.intact) - self._intact_base
        if not self._wait(lambda: link.stats.delivered >= due, SEND_WAIT_S):
            log.warning("simulated MCU %s: the link took %d of %d frames in %g s", self.sensor,
                        link.stats.delivered - self._delivered_base,
                        due - self._delivered_base, SEND_WAIT_S)  # fmt: skip
            self._count_from_now()

    def _count_from_now(self) -> None:
        link = self.link
        self._intact_base = len(self.mcu.intact)
        self._delivered_base = 0 if link is None else link.stats.delivered

    @staticmethod
    def _wait(condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.0001)  # a real pty: the link's thread needs the time to read it
        return True
