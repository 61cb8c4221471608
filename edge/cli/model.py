"""``edge model train|eval|info``: ONNX anomaly models, from recordings (:mod:`edge.modeltools`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from models.shipped import SHIPPED

# As a detector's `model = ...` in a config: a shipped model's name, else a path.
MODEL_HELP = f"the .onnx file, or a shipped model by name ({', '.join(SHIPPED)})"


def register(commands: Any) -> None:
    model = commands.add_parser(
        "model",
        help="train, evaluate and inspect ONNX anomaly models",
        description="Train a PCA reconstruction model on the normal readings of a recording"
        " (edge simulate --record), score it on a labelled recording, or describe a model"
        " file and check its weights.",
    )
    model_verbs = model.add_subparsers(dest="verb", required=True, metavar="VERB")
    train = model_verbs.add_parser(
        "train",
        help="fit a model on the normal data of a recording",
        description="Fit a PCA reconstruction model on the normal readings of one sensor in a"
        " recording (labelled windows left out), calibrate its threshold on held-out"
        " windows and write an ONNX file with its metadata.",
    )
    train.add_argument("recording", metavar="RECORDING", help="JSON Lines from simulate --record")
    train.add_argument("--sensor", required=True, help="the sensor to learn")
    train.add_argument("--quantity", help="its quantity, for multi-quantity sensors")
    train.add_argument(
        "--inputs", help='other series joined to each reading, e.g. "weather.humidity,smoke.ain0"'
    )
    train.add_argument("--window", type=int, required=True, help="readings per window")
    train.add_argument("--hop", type=int, help="readings between windows (default: window)")
    train.add_argument(
        "--features",
        required=True,
        help='comma-separated, e.g. "rms,std,band:3-8" (see the detectors reference)',
    )
    train.add_argument("--out", required=True, metavar="FILE.onnx", help="where to write it")
    rate = train.add_mutually_exclusive_group()
    rate.add_argument("--fpr", type=float, help="false positives per window (default 1e-3)")
    rate.add_argument("--false-alarms-per-day", type=float, help="calibrate to this instead")
    train.add_argument("--holdout", type=float, default=0.25, help="held-out share (0.25)")
    train.add_argument(
        "--labels", metavar="FEEDBACK.sqlite",
        help="a device's feedback file: false alarms fitted as normal, true alarms and misses"
        " scored (see docs/control.md#feedback)",
    )  # fmt: skip
    train.add_argument("--name", help="model name (default: the file's)")
    train.add_argument("--version", default="1", help="model version (default 1)")
    train.add_argument(
        "--components", default="0.9", help="PCA components: a count, or a variance fraction"
    )
    train.set_defaults(handler=cmd_model_train)
    evaluate = model_verbs.add_parser(
        "eval",
        help="score a model on a labelled recording",
        description="Replay a recording through a model and score its alarms against the"
        " labels: precision, recall, F1, false alarms per hour, detection delay.",
    )
    evaluate.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    evaluate.add_argument("recording", metavar="RECORDING", help="JSON Lines with labels")
    evaluate.add_argument("--sensor", help="default: the model's")
    evaluate.add_argument("--quantity", help="default: the model's")
    evaluate.add_argument("--grace", type=float, help="seconds (default: one window)")
    evaluate.add_argument("--threshold", type=float, help="instead of the model's")
    evaluate.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnxruntime", "numpy"],
        help="what runs the model: auto, onnxruntime or numpy (default auto)",
    )
    evaluate.add_argument("--json", action="store_true", help="one JSON object")
    evaluate.set_defaults(handler=cmd_model_eval)
    show = model_verbs.add_parser(
        "info",
        help="metadata, inputs, outputs, weights check",
        description="Describe a model file: metadata, inputs and outputs, and whether the"
        " weights still match their sha256 (exit 1 if not).",
    )
    show.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=cmd_model_info)
    register_rollout(model_verbs)


def register_rollout(model_verbs: Any) -> None:
    from edge.cli.common import add_login_options

    roll = model_verbs.add_parser(
        "rollout",
        help="send a model to a fleet: a canary set in shadow first, then the rest",
        description="Send a model file to every device of a fleet with signed model put"
        " commands: first to the --canary devices, where it runs in shadow until their trials"
        " agree with the running model (then it is promoted), then to all the others."
        " Stops at the first refusal, silence or disagreement, drops the shadows of that"
        " wave and reports per device; exit 1 when stopped.",
    )
    roll.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    roll.add_argument(
        "--fleet", required=True, metavar="CSV",
        help="the devices, in order: a CSV with an id column (as edge flash --fleet reads)",
    )  # fmt: skip
    roll.add_argument(
        "--keys", required=True, metavar="DIR",
        help="the command keys, DIR/<id>.key (what edge flash --fleet writes in keys/)",
    )  # fmt: skip
    roll.add_argument("--detector", required=True, metavar="ID", help="the onnx detector's id")
    roll.add_argument("--model", required=True, metavar="FILE.onnx", help="the new model file")
    roll.add_argument(
        "--canary", type=int, default=2, metavar="N",
        help="devices tried first, the fleet file's first N (default 2)",
    )  # fmt: skip
    roll.add_argument(
        "--promote-after", type=float, default=600.0, metavar="S",
        help="longest a wave's shadows are watched for --min-readings windows (default 600)",
    )  # fmt: skip
    roll.add_argument(
        "--min-agreement", type=float, default=0.95, metavar="F",
        help="fraction of windows each shadow must agree on with the running model (0.95)",
    )  # fmt: skip
    roll.add_argument(
        "--min-readings", type=int, default=20, metavar="N",
        help="shadow windows each device must score before it is judged (default 20)",
    )  # fmt: skip
    roll.add_argument(
        "--poll", type=float, default=1.0, metavar="S",
        help="seconds between two rounds of status polls (default 1)",
    )  # fmt: skip
    roll.add_argument(
        "--timeout", type=float, default=10.0, metavar="S",
        help="seconds to wait for each reply (default 10)",
    )  # fmt: skip
    roll.add_argument(
        "--prefix", default="edgeline", metavar="P", help="topic prefix (default edgeline)"
    )
    add_login_options(roll, "the operator's broker user name")
    roll.add_argument("--json", action="store_true", help="print the report as one JSON object")
    roll.set_defaults(handler=cmd_model_rollout)


def _model_errors(run: Callable[[], int]) -> int:
    """Model commands: bad input (files, arguments, metadata) exits 2, other failures 1."""
    from edge.errors import one_line
    from edge.modeltools.series import ModelCommandError
    from edge.sim.recording import RecordingError
    from models import ModelError, ParamsError
    from models.loader import ModelFileError, ModelInputError
    from models.metadata import MetadataError
    from models.onnx_reader import ModelFormatError

    bad_input = (ModelCommandError, ParamsError, MetadataError, RecordingError)
    # A model file that cannot be read or is malformed is bad input too; a model that
    # fails while running is not.
    bad_files = (ModelFileError, ModelFormatError, ModelInputError)
    try:
        return run()
    except (*bad_input, *bad_files) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
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
            labels=args.labels,
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


def cmd_model_rollout(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.cli.common import broker_login
    from edge.config.command_key import CommandKeyError, read_key_file
    from edge.deploy.fleet import read_fleet
    from edge.errors import ConfigError, UsageError
    from edge.modeltools.rollout import Plan, command_sender, problems, rollout

    found: list[str] = []
    devices: list[str] = []
    try:
        devices = [device.id for device in read_fleet(Path(args.fleet))]
    except UsageError as exc:
        found.append(str(exc))
    keys: dict[str, bytes] = {}
    for device in devices:
        try:
            keys[device] = read_key_file(str(Path(args.keys) / f"{device}.key"))
        except CommandKeyError as exc:
            found.append(f"--keys: {device}: {exc}")
    model = b"-"  # an unreadable file is reported as such, not as an empty one
    try:
        model = Path(args.model).read_bytes()
    except OSError as exc:
        found.append(f"--model: cannot read {args.model}: {exc.strerror or exc}")
    settings_of: dict[str, Any] = {
        "canary": args.canary, "promote_after": args.promote_after,
        "min_agreement": args.min_agreement, "min_readings": args.min_readings,
        "poll": args.poll,
    }  # fmt: skip
    found += problems(model=model, **settings_of)
    if not 0 < args.timeout <= 3600:
        found.append(f"--timeout: expected seconds from 0 to 3600, got {args.timeout:g}")
    settings = broker_login(args, args.broker, found)
    if found or settings is None:
        raise ConfigError(found)
    plan = Plan(args.detector, model, **settings_of)
    send = command_sender(
        args.broker, keys, timeout=args.timeout, prefix=args.prefix,
        username=settings.username, password=settings.password(), ca_file=settings.ca_file,
        cert_file=settings.cert_file, key_file=settings.key_file,
    )  # fmt: skip
    say = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    report = rollout(devices, plan, send, progress=say)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        for outcome in report.devices:
            print(
                f"{outcome.device}: {outcome.state}"
                + (f" ({outcome.reason})" if outcome.reason else "")
            )
    return EXIT_OK if report.ok else EXIT_FAILURE
