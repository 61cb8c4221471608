"""firmware_bridge's host link over a real pty, against the simulated MCU: handshake, readings
stamped in host time, commands answered, and every fault the wire has (garbage, flipped bits,
frames cut short, the port vanishing, the MCU restarting, an MCU of another protocol)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.clock import ClockMap
from firmware_bridge.link import LinkError, McuLink, StampedBlock, StampedReading
from firmware_bridge.messages import Channel
from firmware_bridge.sim import SimulatedMcu
from tests.waiting import wait_until

CHANNELS = [Channel(0, "vibration", "g"), Channel(3, "flow", "L/min")]


class Received:
    def __init__(self) -> None:
        self.readings: list[StampedReading] = []
        self.blocks: list[StampedBlock] = []
        self.states: list[str] = []
        self.lock = threading.Lock()

    def values(self) -> list[float]:
        with self.lock:
            return [r.value for r in self.readings]


@pytest.fixture
def mcu(tmp_path: Path) -> Iterator[SimulatedMcu]:
    simulated = SimulatedMcu(tmp_path / "by-id" / "usb-sim-mcu", CHANNELS, ["relay"], seed=3)
    with simulated:
        yield simulated


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
def link(mcu: SimulatedMcu, received: Received) -> Iterator[McuLink]:
    host = McuLink(
        str(mcu.port), on_reading=received.readings.append, on_block=received.blocks.append,
        on_state=lambda state, _: received.states.append(state), reopen_s=0.05,
    )  # fmt: skip
    host.start()
    wait_until(lambda: host.online, timeout=10)
    yield host
    host.close()


def test_the_link_says_hello_and_stamps_readings_in_host_time(
    mcu: SimulatedMcu, link: McuLink, received: Received
) -> None:
    assert link.hello is not None and link.hello.board == "simulated"
    assert received.states[:2] == ["handshake", "online"]
    for value in range(50):
        mcu.reading(0, float(value))
    mcu.reading(3, 12.5)
    wait_until(lambda: len(received.readings) == 51)
    assert received.values() == [*map(float, range(50)), 12.5]
    assert received.readings[-1].channel == Channel(3, "flow", "L/min")
    now = link.now()
    assert all(now - 2.0 < r.time <= now + 0.01 for r in received.readings)


def test_a_samples_block_arrives_whole_with_its_period(
    mcu: SimulatedMcu, link: McuLink, received: Received
) -> None:
    values = np.sin(np.arange(1000) / 10).astype(np.float32)
    mcu.samples(0, mcu.clock(), 0.001, values)
    wait_until(lambda: len(received.blocks) == 1)
    block = received.blocks[0]
    assert np.array_equal(block.values, values) and block.period == 0.001
    assert block.channel.name == "vibration"


def test_garbage_flipped_bits_and_cut_frames_lose_only_what_they_hit(
    mcu: SimulatedMcu, link: McuLink, received: Received
) -> None:
    sent = []
    for value in range(300):
        if value % 50 == 10:
            mcu.garbage(40)
        if value % 50 == 20:
            mcu.corrupt_next()
        if value % 50 == 30:
            mcu.truncate_next()
        hit = value % 50 in (20, 30)
        mcu.reading(0, float(value))
        if not hit:
            sent.append(float(value))
    mcu.heartbeat()
    wait_until(lambda: link.stats.frames.get("frames", 0) >= len(sent) + 2, timeout=10)
    got = received.values()
    # Garbage may swallow the frame it runs into only when its noise is longer than the
    # resync window; 40 bytes never is: every reading not hit arrives, in order, once.
    assert got == sent
    counted = link.decoder.counters
    assert counted.crc + counted.cobs + counted.length >= 12


def test_a_command_is_acked_and_a_refusal_comes_back_with_its_reason(
    mcu: SimulatedMcu, link: McuLink
) -> None:
    ack = link.command({"set": {"relay": True}})
    assert mcu.outputs["relay"] is True and ack.seq >= 0
    with pytest.raises(LinkError, match="no output pump"):
        link.command({"set": {"pump": True}})
    assert link.stats.nacks == 1


def test_a_port_that_vanishes_and_comes_back_is_reopened(
    mcu: SimulatedMcu, link: McuLink, received: Received
) -> None:
    mcu.reading(0, 1.0)
    wait_until(lambda: received.values() == [1.0])
    mcu.close()
    wait_until(lambda: link.stats.state == "offline")
    with pytest.raises(LinkError, match="offline"):
        link.command({"set": {"relay": True}})
    mcu.open()
    wait_until(lambda: link.online)
    mcu.reading(0, 2.0)
    wait_until(lambda: received.values() == [1.0, 2.0])
    assert link.stats.opens == 2 and "offline" in received.states


def test_a_restarted_mcu_is_mapped_afresh(
    mcu: SimulatedMcu, link: McuLink, received: Received
) -> None:
    mcu.reading(0, 1.0)
    wait_until(lambda: len(received.readings) == 1)
    mcu.reboot()
    mcu.reading(0, 2.0)
    wait_until(lambda: len(received.readings) == 2)
    assert link.stats.reboots == 1
    assert abs(received.readings[1].time - link.now()) < 2.0


def test_an_mcu_speaking_another_protocol_is_refused(tmp_path: Path) -> None:
    received = Received()
    with SimulatedMcu(tmp_path / "tty", CHANNELS, proto=2, fw="9.0") as mcu:
        host = McuLink(str(mcu.port), on_reading=received.readings.append)
        host.start()
        try:
            wait_until(lambda: host.stats.state == "incompatible")
            mcu.reading(0, 1.0)
            mcu.heartbeat()
            wait_until(lambda: host.decoder.counters.frames >= 3)
            assert received.readings == [] and "protocol 2" in host.stats.last_error
        finally:
            host.close()


def test_a_glob_finds_the_port(tmp_path: Path) -> None:
    received = Received()
    with SimulatedMcu(tmp_path / "usb-Raspberry_Pi_Pico_E66-if00", CHANNELS) as mcu:
        host = McuLink(
            str(tmp_path / "usb-Raspberry_Pi_Pico*"), on_reading=received.readings.append
        )
        host.start()
        try:
            wait_until(lambda: host.online)
            mcu.reading(3, 4.0)
            wait_until(lambda: received.values() == [4.0])
        finally:
            host.close()


# --- the clock map ---------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    drift_ppm=st.floats(-200, 200),
    offset=st.floats(-1e6, 1e6),
    latency_ms=st.lists(st.floats(0, 20), min_size=60, max_size=60),
)
def test_the_clock_map_finds_offset_and_drift_through_latency(
    drift_ppm: float, offset: float, latency_ms: list[float]
) -> None:
    """A heartbeat each second for a minute, each late by up to 20 ms, one in each five
    seconds not late at all (the lower envelope): half a minute on, a stamp maps to within
    two milliseconds of when the MCU's clock really read it, drift included (its stamps are
    whole milliseconds, cut down, not rounded: each is up to 1 ms early)."""
    clock = ClockMap(bucket_s=5.0)
    rate = 1 + drift_ppm / 1e6
    for second, late in enumerate(latency_ms):
        late = 0.0 if second % 5 == 2 else late
        host = offset + second
        clock.observe(int(second * rate * 1000), host + late / 1000)
    assert clock.synced
    at = 90.0  # half a minute past the last heartbeat
    mapped = clock.to_host(int(at * rate * 1000))
    assert mapped is not None and abs(mapped - (offset + at)) < 0.002


def test_the_clock_map_counts_across_the_32_bit_wrap() -> None:
    clock = ClockMap()
    before = clock.unwrap(2**32 - 500)
    after = clock.unwrap(300)
    late = clock.unwrap(2**32 - 100)  # a block that began before the wrap, arriving after
    assert after - before == pytest.approx(0.8) and late - before == pytest.approx(0.4)
    assert clock.behind(2**32 - 100) == pytest.approx(0.4)
