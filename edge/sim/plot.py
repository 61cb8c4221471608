"""A recording drawn as one PNG: each signal over time, detections and ground truth.

Panels stack on one time axis, one per sensor; a sensor whose quantities have different
units gets one panel per unit (on a shared axis, a BME280's pressure at 1013 hPa would
flatten its temperature at 22 degC). Each quantity, and each component of a vector, is
its own line; on/off inputs are step lines. Alarms are dashed vertical lines coloured by
severity, with a marker on the signal where the detector fired (an event's value may be a
score or a vector's magnitude: it is never plotted against the signal's unit); health
faults are crosses along the top; label windows, on a sensor, a quantity or a vector's
component (``accel_x``), are shaded and named. A panel never holds more than
``MAX_POINTS`` points, so an hour stays legible: a long series is drawn as its mean per
bin with the bin's min/max band, an on/off input as its changes of state (past the budget,
whether it was on at any time in a bin). Legends sit beside their panels, and the figure's
layout makes room for them.

matplotlib is optional (``edgeline[sim]``): it is imported only when drawing, and through
its object API, never pyplot, so plotting changes no global backend.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edge.errors import EdgelineError
from edge.sim.labels import Label
from edge.sim.recording import RecordedEvent, RecordingData

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_POINTS = 5000  # per panel
DPI = 100
WIDTH = 14.0  # inches
PANEL_HEIGHT = 2.25
TITLE_HEIGHT = 1.25

SEVERITY_COLOURS = {"info": "tab:blue", "warning": "tab:orange", "critical": "tab:red"}
LABEL_COLOURS = {"anomaly": "tab:red", "fault": "tab:purple", "network": "tab:gray"}
FAULT_STATES = ("degraded", "stuck", "out_of_range")
_COMPONENTS = ("x", "y", "z")

Floats = npt.NDArray[np.float64]


class PlotError(EdgelineError, RuntimeError):
    """A recording cannot be plotted (matplotlib missing, unwritable file)."""


@dataclass
class Line:
    name: str
    quantity: str | None  # what the header's units are keyed by
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    boolean: bool = True  # until a non-bool value arrives


@dataclass
class Panel:
    sensor: str
    unit: str
    lines: list[Line] = field(default_factory=list)

    @property
    def quantities(self) -> set[str | None]:
        return {line.quantity for line in self.lines}

    @property
    def boolean(self) -> bool:
        return all(line.boolean for line in self.lines)

    @property
    def components(self) -> set[str]:
        """A vector quantity's axes as labels name them (``accel_x``)."""
        return {
            f"{line.quantity}_{line.name.rpartition('.')[2]}"
            for line in self.lines
            if line.quantity is not None and line.name != line.quantity
        }

    @property
    def title(self) -> str:
        named = sorted({q for q in self.quantities if q is not None})
        return f"{self.sensor} · {', '.join(named)}" if named else self.sensor


def plot(recording: RecordingData, path: str | Path) -> None:
    """Draw ``recording`` to a PNG at ``path``."""
    figure = draw(recording)
    try:
        figure.savefig(path, dpi=DPI, format="png")
    except OSError as exc:
        raise PlotError(f"{path}: cannot write the plot: {exc.strerror or exc}") from exc


def draw(recording: RecordingData) -> Figure:
    """The figure ``plot`` saves: one axes per panel (see ``panels``)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.layout_engine import ConstrainedLayoutEngine
    except ImportError as exc:
        raise PlotError("plotting needs matplotlib: pip install 'edgeline[sim]'") from exc

    layout = panels(recording)
    header = recording.header
    scale, unit = time_scale(header.duration)
    # Constrained layout sizes the axes so that the legends beside them fit on the page.
    layout_engine = ConstrainedLayoutEngine(h_pad=0.08, hspace=0.04)
    figure = Figure(figsize=figure_size(len(layout)), dpi=DPI, layout=layout_engine)
    figure.suptitle(
        f"{header.name}: device {header.device}, seed {header.seed}, start {header.start}",
        fontsize=12,
    )
    if not layout:
        ax = figure.add_subplot()
        ax.text(0.5, 0.5, "no readings recorded", ha="center", va="center")
        ax.set_axis_off()
        return figure
    axes = figure.subplots(len(layout), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, layout, strict=True):
        _draw_panel(ax, panel, recording, scale, header.duration)
    axes[-1].set_xlim(0, header.duration / scale)
    axes[-1].set_xlabel(f"time since start ({unit})")
    return figure


def figure_size(panel_count: int) -> tuple[float, float]:
    """Inches; times ``DPI`` gives the PNG's pixels."""
    return WIDTH, TITLE_HEIGHT + PANEL_HEIGHT * max(panel_count, 1)


def time_scale(duration: float) -> tuple[float, str]:
    """Seconds per axis unit and its name: seconds up to 10 minutes, then minutes, hours."""
    if duration <= 600:
        return 1.0, "s"
    if duration <= 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


# -- layout: which lines go on which panel (no matplotlib) -------------------------------


def panels(recording: RecordingData) -> list[Panel]:
    """The panels in the header's sensor order (sensors only seen in readings after)."""
    sensors = recording.header.sensors
    lines: dict[str, dict[str, Line]] = {}
    for reading in recording.readings:
        by_name = lines.setdefault(reading.sensor, {})
        for name, quantity, number, boolean in _flatten(reading.value):
            line = by_name.get(name)
            if line is None:
                line = by_name[name] = Line(name, quantity)
            line.times.append(reading.t)
            line.values.append(number)
            line.boolean = line.boolean and boolean
    order = [s for s in sensors if s in lines] + sorted(s for s in lines if s not in sensors)
    result: list[Panel] = []
    for sensor in order:
        info = sensors.get(sensor)
        by_unit: dict[str, Panel] = {}
        for line in lines[sensor].values():
            unit = info.unit_of(line.quantity) if info is not None else ""
            by_unit.setdefault(unit, Panel(sensor, unit)).lines.append(line)
        result.extend(by_unit.values())
    return result


def _flatten(value: Any) -> list[tuple[str, str | None, float, bool]]:
    """A recorded value as (line name, quantity, number, is it a flag) tuples."""
    if isinstance(value, Mapping):
        flat: list[tuple[str, str | None, float, bool]] = []
        for quantity in sorted(value):
            for name, _, number, flag in _flatten(value[quantity]):
                named = quantity if name == "value" else f"{quantity}.{name}"
                flat.append((named, quantity, number, flag))
        return flat
    if isinstance(value, list):
        names = _COMPONENTS if len(value) == len(_COMPONENTS) else range(len(value))
        return [
            (str(n), None, _number(v), isinstance(v, bool))
            for n, v in zip(names, value, strict=True)
        ]
    return [("value", None, _number(value), isinstance(value, bool))]


def _number(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    return math.nan  # null (a non-finite value) or text: a gap in the line


def downsample(t: Floats, v: Floats, budget: int) -> tuple[Floats, Floats, Floats, Floats] | None:
    """(t, min, max, mean) per bin of equal count when there are more than ``budget``
    points, three drawn per bin; None when the series fits and is drawn as is."""
    if len(t) <= budget:
        return None
    bins = max(budget // 3, 1)
    starts = np.linspace(0, len(t), bins, endpoint=False).astype(np.intp)
    counts = np.diff(np.append(starts, len(t)))
    finite = np.isfinite(v)
    lows = np.fmin.reduceat(v, starts)  # fmin and fmax skip NaN gaps
    highs = np.fmax.reduceat(v, starts)
    sums = np.add.reduceat(np.where(finite, v, 0.0), starts)
    kept = np.add.reduceat(finite.astype(np.float64), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / kept
    return t[starts + counts // 2], lows, highs, means


@dataclass(frozen=True)
class Trace:
    """One line as drawn: its points, or per bin its mean with a min/max envelope."""

    label: str
    t: Floats
    values: Floats  # the values, or the bins' means
    envelope: tuple[Floats, Floats] | None = None
    step: bool = False

    @property
    def points(self) -> int:
        return len(self.t) * (1 if self.envelope is None else 3)


def changes(t: Floats, v: Floats) -> tuple[Floats, Floats]:
    """A step line's corners: its first point, each change of state, and its last point."""
    if len(t) <= 2:
        return t, v
    same = (v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1]))
    keep = np.append(True, ~same)
    keep[-1] = True
    return t[keep], v[keep]


def traces(panel: Panel, duration: float) -> list[Trace]:
    """What ``draw`` plots on a panel: at most ``MAX_POINTS`` points in all."""
    budget = MAX_POINTS // max(len(panel.lines), 1)
    result = []
    for line in panel.lines:
        label = panel.sensor if line.name == "value" else line.name
        t = np.asarray(line.times, dtype=np.float64)
        v = np.asarray(line.values, dtype=np.float64)
        if panel.boolean:
            result.append(_steps(label, t, v, duration, budget))
            continue
        reduced = downsample(t, v, budget)
        if reduced is None:
            result.append(Trace(label, t, v))
        else:
            times, lows, highs, means = reduced
            result.append(Trace(f"{label} (mean, min-max)", times, means, (lows, highs)))
    return result


def _steps(label: str, t: Floats, v: Floats, duration: float, budget: int) -> Trace:
    """An on/off input as a step line: it holds its last state to the end of the run, and
    only its changes are drawn; past the budget, per bin whether it was on at any time (a
    mean of on and off would draw states the input never had)."""
    t, v = changes(np.append(t, duration), np.append(v, v[-1]))
    reduced = downsample(t, v, budget)
    if reduced is None:
        return Trace(label, t, v, step=True)
    times, _, highs, _ = reduced
    return Trace(f"{label} (on at any time per bin)", times, highs, step=True)


# -- drawing -------------------------------------------------------------------------------


def _draw_panel(
    ax: Axes, panel: Panel, recording: RecordingData, scale: float, duration: float
) -> None:
    for trace in traces(panel, duration):
        t = trace.t / scale
        if trace.step:
            ax.step(t, trace.values, where="post", label=trace.label, linewidth=1.2)
        elif trace.envelope is None:
            ax.plot(t, trace.values, label=trace.label, linewidth=0.9)
        else:
            lows, highs = trace.envelope
            # One legend entry: the mean line, named for its band of bin minima and maxima.
            (drawn,) = ax.plot(t, trace.values, label=trace.label, linewidth=0.8)
            ax.fill_between(t, lows, highs, color=drawn.get_color(), alpha=0.3, linewidth=0)
    if panel.boolean:
        ax.set_yticks([0, 1], ["off", "on"])
        ax.set_ylim(-0.15, 1.3)
    ax.set_ylabel(panel.unit or ("state" if panel.boolean else "value"))
    ax.set_title(panel.title, loc="left", fontsize=9)
    ax.grid(True, alpha=0.3)
    _draw_labels(ax, panel, recording.labels, scale)
    _draw_events(ax, panel, recording.events, scale)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)


def _draw_labels(ax: Axes, panel: Panel, labels: Sequence[Label], scale: float) -> None:
    shown: set[str] = set()
    # One window labelled on several quantities or axes of a panel is drawn once.
    on_panel: dict[tuple[str, str, float, float], Label] = {}
    for lab in labels:
        if _label_on(lab, panel):
            on_panel.setdefault((lab.kind, lab.label, lab.start, lab.end), lab)
    for i, label in enumerate(on_panel.values()):
        colour = LABEL_COLOURS.get(label.kind, "tab:brown")
        legend = f"truth: {label.kind}" if label.kind not in shown else None
        shown.add(label.kind)
        ax.axvspan(
            label.start / scale,
            label.end / scale,
            color=colour,
            alpha=0.13,
            linewidth=0,
            label=legend,
        )
        ax.text(
            label.start / scale,
            0.97 - 0.12 * (i % 3),
            f" {label.label}",
            transform=ax.get_xaxis_transform(),
            va="top",
            fontsize=8,
            color=colour,
            clip_on=True,
        )


def _label_on(label: Label, panel: Panel) -> bool:
    """Whether a label concerns a panel: the whole device, the panel's sensor, one of its
    quantities, or an axis of one of its vectors (``motor.accel_x`` is on ``accel``)."""
    if label.sensor is None or label.sensor == panel.sensor:
        return True
    sensor, _, quantity = label.sensor.rpartition(".")
    if sensor != panel.sensor:
        return False
    return quantity in panel.quantities or quantity in panel.components


def _draw_events(ax: Axes, panel: Panel, events: Sequence[RecordedEvent], scale: float) -> None:
    shown: set[str] = set()

    def once(name: str) -> str | None:
        if name in shown:
            return None
        shown.add(name)
        return name

    for event in events:
        if event.sensor != panel.sensor:
            continue
        quantity = event.fields.get("quantity")
        if quantity is not None and quantity not in panel.quantities:
            continue
        state = event.fields.get("state")
        t = event.t / scale
        if event.kind == "health":
            if state in FAULT_STATES:
                ax.plot(
                    [t],
                    [0.98],
                    marker="X",
                    color="tab:purple",
                    linestyle="none",
                    markersize=8,
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                    label=once("health fault"),
                )
        elif event.kind != "telemetry" and state == "active":
            colour = SEVERITY_COLOURS.get(event.severity, "black")
            ax.axvline(
                t,
                color=colour,
                linestyle="--",
                linewidth=1.1,
                label=once(f"{event.kind} {event.severity}"),
            )
            _mark(ax, panel, event, scale, marker="v", color=colour, markersize=7)
        elif event.kind != "telemetry" and state == "clear":
            _mark(
                ax,
                panel,
                event,
                scale,
                marker="o",
                markerfacecolor="none",
                color="tab:green",
                markersize=6,
                label=once("cleared"),
            )


def _mark(ax: Axes, panel: Panel, event: RecordedEvent, scale: float, **style: Any) -> None:
    """A detection's marker: on the signal it fired on, or, when there is no one line to
    sit on (a vector, a whole-sensor event on several quantities), at the top of the axes.
    Never at the event's value: a score or a magnitude would rescale the signal's axis."""
    t = event.t / scale
    quantity = event.fields.get("quantity")
    y = signal_at(panel, quantity if isinstance(quantity, str) else None, event.t)
    if y is None:
        top = ax.get_xaxis_transform()  # x in data, y in axes coordinates: no y-limits
        ax.plot([t], [1.0], linestyle="none", transform=top, clip_on=False, **style)
    else:
        ax.plot([t], [y], linestyle="none", clip_on=False, **style)


def signal_at(panel: Panel, quantity: str | None, t: float) -> float | None:
    """The value of the panel's one line of ``quantity`` (any, if None) at ``t``: its last
    reading at or before ``t``. None when the panel has no single such line (a vector, or
    several quantities) or no finite reading by then."""
    lines = [line for line in panel.lines if quantity is None or line.quantity == quantity]
    if len(lines) != 1:
        return None
    line = lines[0]
    i = bisect.bisect_right(line.times, t) - 1
    if i < 0 or not math.isfinite(line.values[i]):
        return None
    return line.values[i]
