"""The ``edge`` command: a thin layer over the library that turns its errors into exit codes.

Exit 0 on success, 2 on bad input (config, arguments; one line per problem, no traceback),
1 on other failures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from edge import __version__
from edge.errors import ConfigError, EdgelineError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
NOT_DRAINED = "; outbox not drained before the timeout (events stay stored)"
STATUS_EVERY = 60  # seconds between status lines in the log of `edge run`

log = logging.getLogger("edge")


class UsageError(EdgelineError, ValueError):
    """Command-line arguments that do not fit together."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="edgeline: event-driven edge runtime for Raspberry-Pi-class devices.",
    )
    parser.add_argument("--version", action="version", version=f"edgeline {__version__}")
    parser.add_argument(
        "--log-level", default=None, choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info for run, warning otherwise)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run on the device's real GPIO and I2C hardware")
    run.add_argument("--config", required=True, metavar="FILE", help="the device's TOML config")
    run.set_defaults(handler=cmd_run)

    sim = commands.add_parser(
        "simulate", help="run the same runtime on simulated hardware, with an embedded broker"
    )
    sim.add_argument("--scenario", metavar="NAME|FILE", help="built-in name or scenario file")
    sim.add_argument("--config", metavar="FILE", help="simulate the hardware of this config")
    sim.add_argument("--broker", metavar="URL", help="use this broker instead of an embedded one")
    sim.add_argument("--state-dir", metavar="DIR", help="keep the outbox here (default: temp)")
    sim.add_argument("--speed", metavar="X|max", help="times real time, or max (virtual clock)")
    sim.add_argument("--duration", type=float, metavar="S", help="simulated seconds to run")
    sim.add_argument(
        "--seed", type=int, metavar="N", help="noise and random events (default: scenario's)"
    )
    sim.add_argument(
        "--devices", type=int, default=1, metavar="N", help="simulate N devices on one broker"
    )
    sim.add_argument(
        "--drain-timeout", type=float, default=10.0, metavar="S",
        help="at the end, wait this long for the outbox to drain upstream (default 10)",
    )  # fmt: skip
    sim.add_argument("--record", metavar="FILE", help="write readings, events, labels (JSONL)")
    sim.add_argument("--plot", metavar="FILE.png", help="draw signals, detections and labels")
    sim.add_argument(
        "--grace", type=float, default=60.0, metavar="S",
        help="seconds after a label a detection still counts (default 60)",
    )  # fmt: skip
    sim.add_argument("--quiet", action="store_true", help="print only the summary")
    sim.set_defaults(handler=cmd_simulate)

    check = commands.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=cmd_check_config)

    outbox = commands.add_parser("outbox", help="inspect a device's outbox, replay a range")
    verbs = outbox.add_subparsers(dest="verb", required=True, metavar="VERB")
    stats = verbs.add_parser("stats", help="depth per priority, oldest age, evicted, delivered")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    tail = verbs.add_parser("tail", help="the newest stored events, as JSON lines")
    tail.add_argument("-n", type=int, default=10, help="how many (default 10)")
    tail.add_argument("--pending", action="store_true", help="only events not yet delivered")
    replay = verbs.add_parser("replay", help="publish a seq range again (a consumer lost it)")
    replay.add_argument("--from-seq", type=int, required=True, metavar="N", help="first seq")
    replay.add_argument("--to-seq", type=int, metavar="M", help="last seq (default: the newest)")
    replay.add_argument("--broker", metavar="URL", help="broker URL (default: the config's)")
    for verb in (stats, tail, replay):
        where = verb.add_mutually_exclusive_group(required=True)
        where.add_argument("--config", metavar="FILE", help="the device's config")
        where.add_argument("--state-dir", metavar="DIR", help="the state directory")
    stats.set_defaults(handler=cmd_outbox_stats)
    tail.set_defaults(handler=cmd_outbox_tail)
    replay.set_defaults(handler=cmd_outbox_replay)

    model = commands.add_parser("model", help="train, evaluate and inspect ONNX anomaly models")
    model_verbs = model.add_subparsers(dest="verb", required=True, metavar="VERB")
    train = model_verbs.add_parser("train", help="fit a model on the normal data of a recording")
    train.add_argument("recording", metavar="RECORDING", help="JSON Lines from simulate --record")
    train.add_argument("--sensor", required=True, help="the sensor to learn")
    train.add_argument("--quantity", help="its quantity, for multi-quantity sensors")
    train.add_argument(
        "--inputs", help='other series joined to each reading, e.g. "weather.humidity,smoke.ain0"'
    )
    train.add_argument("--window", type=int, required=True, help="readings per window")
    train.add_argument("--hop", type=int, help="readings between windows (default: window)")
    train.add_argument("--features", required=True, help='e.g. "rms,std,band:3-8"')
    train.add_argument("--out", required=True, metavar="FILE.onnx", help="where to write it")
    rate = train.add_mutually_exclusive_group()
    rate.add_argument("--fpr", type=float, help="false positives per window (default 1e-3)")
    rate.add_argument("--false-alarms-per-day", type=float, help="calibrate to this instead")
    train.add_argument("--holdout", type=float, default=0.25, help="held-out share (0.25)")
    train.add_argument("--name", help="model name (default: the file's)")
    train.add_argument("--version", default="1", help="model version (default 1)")
    train.add_argument(
        "--components", default="0.9", help="PCA components: a count, or a variance fraction"
    )
    train.set_defaults(handler=cmd_model_train)
    evaluate = model_verbs.add_parser("eval", help="score a model on a labelled recording")
    evaluate.add_argument("model", metavar="MODEL", help="the .onnx file")
    evaluate.add_argument("recording", metavar="RECORDING", help="JSON Lines with labels")
    evaluate.add_argument("--sensor", help="default: the model's")
    evaluate.add_argument("--quantity", help="default: the model's")
    evaluate.add_argument("--grace", type=float, help="seconds (default: one window)")
    evaluate.add_argument("--threshold", type=float, help="instead of the model's")
    evaluate.add_argument(
        "--backend", default="auto", choices=["auto", "onnxruntime", "numpy"], help="runtime"
    )
    evaluate.add_argument("--json", action="store_true", help="one JSON object")
    evaluate.set_defaults(handler=cmd_model_eval)
    show = model_verbs.add_parser("info", help="metadata, inputs, outputs, weights check")
    show.add_argument("model", metavar="MODEL", help="the .onnx file")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=cmd_model_info)

    detect = commands.add_parser(
        "detect", help="replay a recorded series through a detector, strictly streaming"
    )
    detect.add_argument("--input", required=True, metavar="FILE", help="CSV or recording")
    detect.add_argument("--detector", required=True, metavar="NAME", help="e.g. adaptive")
    detect.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a detector parameter"
    )
    detect.add_argument("--output", required=True, metavar="FILE.csv", help="where to write")
    detect.add_argument("--sensor", help="the sensor to replay (recordings only)")
    detect.add_argument("--quantity", help="its quantity, for multi-quantity sensors")
    detect.set_defaults(handler=cmd_detect)

    sink = commands.add_parser("sink", help="subscribe to a broker and print events, checking seq")
    sink.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    sink.add_argument("--prefix", default="edgeline", help="topic prefix (default edgeline)")
    sink.add_argument("--device", default="+", help="one device id (default: all)")
    sink.set_defaults(handler=cmd_sink)

    bench = commands.add_parser(
        "bench", help="measure throughput, latency, footprint and budgets against baselines"
    )
    bench.add_argument("--smoke", action="store_true", help="tiny sizes, in seconds (a check)")
    bench.add_argument("--json", metavar="FILE", help="also write every figure as JSON here")
    bench.add_argument("--only", metavar="NAME,...", help="run only these figure groups")
    bench.add_argument(
        "--dir", metavar="DIR", help="scratch directory; its disk is the one measured for wear"
    )
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    default_level = "info" if args.command == "run" else "warning"
    logging.basicConfig(
        level=(args.log_level or default_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EdgelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _stop_on_signals() -> threading.Event:
    """SIGINT and SIGTERM set the returned event: the command then stops cleanly."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge.config.device import load
    from edge.sim.scenario import is_scenario, load_scenario

    if is_scenario(args.file):  # a config plus a [simulation] table
        scenario = load_scenario(args.file, overrides={})
        settings = scenario.settings
        print(
            f"{scenario.config.summary()} As a scenario: {settings.duration:g} simulated"
            f" seconds at {settings.speed:g}x, {len(scenario.signals)} signal(s),"
            f" {len(scenario.presses)} GPIO press(es)."
        )
    else:
        print(load(args.file).summary())
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from edge.clock import RealClock
    from edge.config.device import load
    from edge.runtime.hardware import RealHardware
    from edge.runtime.runtime import Runtime

    config = load(args.config)
    clock = RealClock(assume_synced=config.device.rtc)
    stop = _stop_on_signals()
    with RealHardware(clock) as hardware:
        runtime = Runtime(config, hardware=hardware.hardware, clock=clock)
        try:
            runtime.start()
            log.info("running: %s", config.summary())
            beats = 0
            while not stop.wait(1.0) and not runtime.sampling_done(0):
                beats += 1
                if beats % STATUS_EVERY == 0:  # readings, seq, backlog, link, jitter
                    log.info("status: %s", json.dumps(runtime.status()))
        finally:
            runtime.close()
    log.info("stopped cleanly: %s", json.dumps(runtime.status()))
    return EXIT_OK


def _speed(text: str | None, default: float) -> float | None:
    """The --speed value: a positive factor, or None for 'max' (virtual clock)."""
    if text is None:
        return default
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = -1.0
    if not (speed > 0 and math.isfinite(speed)):
        raise UsageError(f"--speed: expected a positive number or 'max', found {text!r}")
    return speed


def cmd_simulate(args: argparse.Namespace) -> int:
    from edge.config.device import broker_url
    from edge.sim.broker import EmbeddedBroker
    from edge.sim.scenario import load_scenario

    if args.scenario and args.config:
        raise UsageError("give --scenario or --config, not both")
    if args.duration is not None and not args.duration > 0:
        raise UsageError(
            f"--duration: expected a positive number of seconds, found {args.duration}"
        )
    if args.devices < 1:
        raise UsageError(f"--devices: expected a positive number, found {args.devices}")
    if args.broker and broker_url(args.broker):
        raise UsageError(f"--broker: expected {broker_url(args.broker)}, found {args.broker!r}")
    temporary = None if args.state_dir else tempfile.mkdtemp(prefix="edgeline-sim-")
    state_dir = args.state_dir or temporary
    stop = _stop_on_signals()
    broker: EmbeddedBroker | None = None
    try:
        url = args.broker
        if url is None:
            broker = EmbeddedBroker().start()
            url = broker.url
        scenario = load_scenario(
            args.scenario,
            config_path=args.config,
            overrides={"storage": {"state_dir": state_dir}, "uplink": {"broker": url}},
        )
        return _simulate(scenario, args, stop, embedded=broker is not None)
    finally:
        if broker is not None:
            broker.close()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _simulate(
    scenario: Any, args: argparse.Namespace, stop: threading.Event, embedded: bool
) -> int:
    from edge.cloud.sink import Sink
    from edge.errors import UplinkError
    from edge.runtime.runtime import Watcher, Watchers
    from edge.sim.console import Console
    from edge.sim.labels import score
    from edge.sim.plot import plot
    from edge.sim.recording import Recording, read_recording, sensor_infos
    from edge.sim.scenario import labels
    from edge.sim.simulator import Simulator

    config = scenario.config
    if args.seed is not None:
        scenario = dataclasses.replace(
            scenario, settings=dataclasses.replace(scenario.settings, seed=args.seed)
        )
    speed = _speed(args.speed, scenario.settings.speed)
    duration = args.duration if args.duration is not None else scenario.settings.duration
    consoles: dict[str, Console] = {}
    recordings: dict[str, Recording] = {}
    truth = labels(scenario)
    scratch = tempfile.mkdtemp(prefix="edgeline-rec-")  # when only a plot or a score is asked

    def watcher(device_scenario: Any, t0: float) -> Watcher:
        device = device_scenario.config.device.id
        prefix = f"{device} " if args.devices > 1 else ""
        consoles[device] = Console(t0, quiet=args.quiet, prefix=prefix)
        if not (args.record or args.plot or truth):
            return consoles[device]
        path = _per_device(args.record, device, args.devices) or Path(scratch) / f"{device}.jsonl"
        recordings[device] = Recording(
            path,
            t0,
            truth,
            name=device_scenario.name,
            device=device,
            seed=device_scenario.settings.seed,
            start_wall=device_scenario.settings.start_epoch,
            duration=duration,
        )
        return Watchers(consoles[device], recordings[device])

    def started(run: Any) -> None:
        recording = recordings.get(run.scenario.config.device.id)
        if recording is not None:
            recording.describe(sensor_infos(run.runtime.sensors))

    where = "embedded broker at " if embedded else "broker "
    print(
        f"edgeline simulate: {scenario.name}, device {config.device.id}"
        f"{f' x {args.devices}' if args.devices > 1 else ''}, {duration:g} s at "
        f"{'max' if speed is None else f'{speed:g}x'} speed, seed {scenario.settings.seed}, "
        f"{where}{config.uplink.broker}, state in {config.storage.state_dir}",
        flush=True,
    )
    sink = Sink(
        config.uplink.broker,
        prefix=config.uplink.topic_prefix,
        device=config.device.id if args.devices == 1 else "+",
        on_event=lambda topic, body, dup: _to_console(consoles, body, topic, dup),
        on_status=lambda topic, body: _status_to_console(consoles, topic, body),
    )
    try:
        sink.start()
    except UplinkError as exc:  # the device runs without its broker: events wait on disk
        print(f"broker unreachable ({exc}); events are stored until it is back", flush=True)
        sink.start(wait=False)
    simulator = Simulator(
        scenario,
        speed=speed,
        duration=duration,
        devices=args.devices,
        watcher=watcher,
        stop=stop,
        on_start=started,
    )
    live = None
    if speed is not None and not args.quiet:
        live = threading.Thread(target=_live, args=(simulator, consoles, stop), daemon=True)
        live.start()
    try:
        runs = simulator.run(drain_timeout=args.drain_timeout)
    finally:
        simulator.finished.set()
        if live is not None:
            live.join()
        for recording in recordings.values():
            recording.close()
    for run in runs:
        device = run.scenario.config.device.id
        sink.wait_for(
            device, run.stream, run.last_seq, 5.0 if run.drained else 0.5, first=run.first_seq
        )
    sink.close()
    for run in runs:
        device = run.scenario.config.device.id
        console = consoles[device]
        console.close()  # every line printed before the summary
        received = sink.received(device, run.stream)
        kinds = ", ".join(f"{n} {k}/{sev}" for (k, sev), n in sorted(console.events.items()))
        missing = len(received.missing(run.last_seq, first=run.first_seq))
        crashes = f"; {run.crashes} power cut(s)" if run.crashes else ""
        print(
            f"summary{f' {device}' if args.devices > 1 else ''}: {console.readings} readings; "
            f"{sum(console.events.values())} events stored ({kinds or 'none'}); stream "
            f"{run.stream} at seq {run.last_seq}; upstream received {len(received.seqs)} "
            f"distinct, {received.duplicates} duplicates, {missing} missing; sampling jitter "
            f"p99 {run.jitter_p99 * 1000:.2f} ms over {run.polls} polls{crashes}"
            f"{'' if run.drained else NOT_DRAINED}",
            flush=True,
        )
        kept = recordings.get(device)
        if kept is None:
            continue
        data = read_recording(kept.path)
        if truth:
            found = score(truth, data.events, grace=args.grace, duration=duration)
            print(f"labels{f' {device}' if args.devices > 1 else ''}: {found.summary()}")
        target = _per_device(args.plot, device, args.devices)
        if target is not None:
            plot(data, target)
            print(f"plot: {target}", flush=True)
        if args.record:
            print(f"recording: {kept.path}", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return EXIT_OK


LIVE_EVERY = 2.0  # real seconds between live status lines in real-time runs


def _live(simulator: Any, consoles: dict[str, Any], stop: threading.Event) -> None:
    """A status line every few seconds: readings/s, events, outbox depth, link state."""
    last: dict[str, int] = {}
    while not simulator.finished.wait(LIVE_EVERY):
        for run in list(simulator.runs):
            device = run.scenario.config.device.id
            status = run.runtime.status()
            readings = status["readings"]
            rate = (readings - last.get(device, 0)) / LIVE_EVERY
            last[device] = readings
            depth = status["last_seq"] - status["acked"] + status["queued"]
            consoles[device].live(
                f"{rate:.1f} readings/s, {status['last_seq']} events, outbox ~{depth} pending,"
                f" link {status['link']}"
            )


def _per_device(path: str | None, device: str, count: int) -> Path | None:
    """The file for one device: as given for a single device, else with the id added."""
    if path is None:
        return None
    target = Path(path)
    return target if count == 1 else target.with_name(f"{target.stem}-{device}{target.suffix}")


def _to_console(consoles: dict[str, Any], body: dict[str, Any], topic: str, dup: bool) -> None:
    console = consoles.get(str(body.get("device")))
    if console is not None:
        console.upstream(topic, body, dup)


def _status_to_console(consoles: dict[str, Any], topic: str, body: dict[str, Any]) -> None:
    console = consoles.get(str(body.get("device")))
    if console is not None:
        console.status(topic, body)


def _outbox_dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir)
    from edge.config.device import load

    return Path(load(args.config).storage.state_dir)


def cmd_outbox_stats(args: argparse.Namespace) -> int:
    from edge.outbox.inspect import stats

    limits = None
    if args.config:
        from edge.config.device import load
        from edge.outbox.limits import Limits

        limits = Limits.from_config(load(args.config).storage)
    figures = stats(_outbox_dir(args), limits)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:<20} {value}")
    return EXIT_OK


def cmd_outbox_tail(args: argparse.Namespace) -> int:
    from edge.outbox.inspect import tail

    for event in tail(_outbox_dir(args), args.n, pending_only=args.pending):
        print(event.payload)
    return EXIT_OK


def cmd_outbox_replay(args: argparse.Namespace) -> int:
    from edge.config.device import UplinkConfig, broker_url, load
    from edge.uplink.replay import replay

    if args.from_seq < 1 or (args.to_seq is not None and args.to_seq < args.from_seq):
        raise UsageError("expected 1 <= --from-seq <= --to-seq")
    if args.config:
        settings = load(args.config).uplink
        if args.broker:
            settings = dataclasses.replace(settings, broker=args.broker)
    elif args.broker:
        settings = UplinkConfig(broker=args.broker)
    else:
        raise UsageError("edge outbox replay --state-dir needs --broker URL (or use --config)")
    problem = broker_url(settings.broker)
    if problem:
        raise UsageError(f"--broker: expected {problem}, found {settings.broker!r}")
    result = replay(_outbox_dir(args), settings, first=args.from_seq, last=args.to_seq)
    print(result.summary())
    return EXIT_OK if result.acked == result.sent else EXIT_FAILURE


def _model_errors(run: Callable[[], int]) -> int:
    """Model commands: bad input (files, arguments, metadata) exits 2, other failures 1."""
    from edge.modeltools.series import ModelCommandError
    from edge.sim.recording import RecordingError
    from models import ModelError, ParamsError
    from models.metadata import MetadataError

    try:
        return run()
    except (ModelCommandError, ParamsError, MetadataError, RecordingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_model_train(args: argparse.Namespace) -> int:
    from edge.modeltools.series import ModelCommandError
    from edge.modeltools.train import train

    def run() -> int:
        try:
            components: float = (
                float(args.components) if "." in args.components else int(args.components)
            )
        except ValueError:
            raise ModelCommandError(
                f"--components: expected a count or a variance fraction, found {args.components!r}"
            ) from None
        report = train(
            args.recording,
            sensor=args.sensor,
            quantity=args.quantity,
            inputs=[name.strip() for name in (args.inputs or "").split(",") if name.strip()],
            window=args.window,
            hop=args.hop,
            features=args.features,
            out=args.out,
            fpr=1e-3 if args.fpr is None else args.fpr,
            false_alarms_per_day=args.false_alarms_per_day,
            holdout=args.holdout,
            name=args.name,
            version=args.version,
            components=components,
        )
        print(report.summary())
        return EXIT_OK

    return _model_errors(run)


def cmd_model_eval(args: argparse.Namespace) -> int:
    from edge.modeltools.evaluate import evaluate

    def run() -> int:
        report = evaluate(
            args.model,
            args.recording,
            sensor=args.sensor,
            quantity=args.quantity,
            grace=args.grace,
            threshold=args.threshold,
            backend=args.backend,
        )
        if args.json:
            found = report.score
            print(json.dumps({
                "model": str(report.model), "recording": str(report.recording),
                "sensor": report.sensor, "quantity": report.quantity,
                "threshold": report.threshold, "windows": report.windows,
                "labels": found.labels, "caught": found.true_positives,
                "false_alarms": found.false_positives, "precision": found.precision,
                "recall": found.recall, "f1": found.f1,
                "false_alarms_per_hour": found.false_alarms_per_hour,
                "mean_delay": found.mean_delay, "max_delay": found.max_delay,
            }))  # fmt: skip
        else:
            print(report.summary())
        return EXIT_OK

    return _model_errors(run)


def cmd_model_info(args: argparse.Namespace) -> int:
    from edge.modeltools.info import info

    def run() -> int:
        found = info(args.model)
        print(json.dumps(found.as_dict()) if args.json else found.summary())
        return EXIT_OK if found.weights.ok else EXIT_FAILURE

    return _model_errors(run)


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import FIGURES, BenchError, run
    from edge.bench.mosquitto import BrokerUnavailable

    only = tuple(n.strip() for n in args.only.split(",") if n.strip()) if args.only else FIGURES
    unknown = [name for name in only if name not in FIGURES]
    if unknown:
        raise UsageError(f"--only: unknown {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    try:
        result = run(smoke=args.smoke, only=only, directory=args.dir)
    except (BenchError, BrokerUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(result["table"])
    machine = result["machine"]
    print(
        f"\n{result['mode']} run, {machine['date']}, {machine['cpus']} x {machine['cpu_model']},"
        f" Python {machine['python']}, load average {machine['load_average']} before and"
        f" {result['load_average_after']} after, {result['seconds']['total']:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return EXIT_OK


def cmd_detect(args: argparse.Namespace) -> int:
    from edge.modeltools.detect import DetectInputError, detect, parse_settings

    try:
        summary = detect(
            args.input,
            args.output,
            args.detector,
            parse_settings(args.set),
            sensor=args.sensor,
            quantity=args.quantity,
        )
    except DetectInputError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{summary.rows} readings scored, {summary.alarms} alarms: {summary.output}")
    return EXIT_OK


def cmd_sink(args: argparse.Namespace) -> int:
    from edge.cloud.sink import Sink

    stop = _stop_on_signals()

    def show(topic: str, body: dict[str, Any], duplicate: bool) -> None:
        print(json.dumps({"topic": topic, "duplicate": duplicate, **body}), flush=True)

    def status(topic: str, body: dict[str, Any]) -> None:
        print(json.dumps({"topic": topic, **body}), flush=True)

    with Sink(args.broker, prefix=args.prefix, device=args.device, on_event=show, on_status=status):
        stop.wait()
    return EXIT_OK
