"""Rebuild the shipped anomaly models in models/ and their model cards, from the simulator.

Run from a checkout: ``.venv/bin/python tools/build_models.py [--only NAME] [--work DIR]``.
For each model below it

1. records normal running with ``edge simulate``: the model's scenario with its injected
   anomalies removed, for ``train_hours`` (seed 11);
2. fits the model on that recording with ``edge model train`` (threshold calibrated for at
   most 0.1 alarm windows a day);
3. scores it with ``edge model eval`` on the labelled scenario run with seeds 101-105, and on
   a normal simulated day (seed 12) for false alarms per day;
4. writes ``models/<name>.onnx`` and ``models/<name>.md`` (the model card) with those figures.

Everything goes through the ``edge`` command a user runs, so the card's figures are what
``edge model eval`` gives on the same recordings. Seeds are fixed: a rebuild gives the same
weights on the same machine (numpy's SVD may differ in the last bits elsewhere).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "edge" / "sim" / "scenarios"
TRAIN_SEED = 11
NORMAL_DAY_SEED = 12
EVAL_SEEDS = (101, 102, 103, 104, 105)
FALSE_ALARMS_PER_DAY = 0.1


@dataclass(frozen=True)
class Shipped:
    name: str
    scenario: str
    train_hours: float
    train: tuple[str, ...]  # edge model train options
    about: str  # the card's opening: what the model watches and why these features
    limits: str  # what the figures do not show
    config: str  # a [[detectors]] table using it


SHIPPED = (
    Shipped(
        name="vibration",
        scenario="factory-vibration",
        train_hours=6.0,
        train=(
            "--sensor",
            "motor",
            "--quantity",
            "accel",
            "--window",
            "80",
            "--hop",
            "20",
            "--features",
            "rms,std,peak,kurtosis",
            "--components",
            "0",
        ),
        about=(
            "Bearing-fault detector for a motor's drive-end bearing, from an MPU-6050's "
            "3-axis acceleration polled in burst mode at 4 Hz. Each window of 80 readings "
            "(20 s, a new window every 5 s) becomes the RMS, standard deviation, peak and "
            "excess kurtosis of each axis (12 features); the score is their squared distance "
            "from normal running in standard deviations (a PCA reconstruction model with no "
            "components kept, i.e. a diagonal Mahalanobis distance). A 4 Hz poll cannot "
            "resolve the 89 Hz outer-race tone, but the tone's energy aliases into the "
            "samples and raises their spread, which is what the model watches."
        ),
        limits=(
            "The scenario's defect grows from nothing (t = 2100 s) to 0.25 g at the end of the "
            "hour, so no detector can see it at its start: after the ~2 minutes the model "
            "takes, the tone is about 0.02 g, half the 0.038 g RMS of normal running. That is "
            "some 20 windows, not the two windows one would want; a FIFO model "
            '(`mode = "fifo"`, a band feature at the defect frequency) sees it far sooner, '
            "but recordings hold polled readings, not FIFO blocks, so `edge model train` "
            "cannot fit one yet. Trained on one simulated motor at one speed: another speed "
            "or mounting moves every feature and needs retraining."
        ),
        config="""[[detectors]]
id = "bearing-anomaly"
sensor = "motor"
quantity = "accel"
type = "onnx"
model = "vibration"        # the shipped model
window = 80
hop = 20
width = 3
features = "rms,std,peak,kurtosis"
severity = "warning\"""",
    ),
    Shipped(
        name="environment",
        scenario="wildfire",
        train_hours=24.0,
        train=(
            "--sensor",
            "weather",
            "--quantity",
            "temperature",
            "--inputs",
            "weather.humidity,smoke.ain0",
            "--window",
            "12",
            "--hop",
            "1",
            "--features",
            "slope,std",
            "--components",
            "0",
        ),
        about=(
            "Fire-front detector for a ridge-top weather station: air temperature and "
            "humidity from a BME280 (every 10 s) joined with the latest smoke-sensor voltage "
            "from an ADS1115 (every 2 s) into one 3-value reading. Each window of the last 12 "
            "readings (2 minutes, a new window every reading) becomes the slope and standard "
            "deviation of each series (6 features); the score is their squared distance from "
            "normal weather in standard deviations. Slopes and spreads, not levels: the daily "
            "cycle moves the levels by 10 degC and 12 %RH, but slowly, while a fire front "
            "heats, dries and smokes the air within minutes."
        ),
        limits=(
            "The detection comes within two readings of the weather sensor (20 s) of the front's "
            "first smoke. A slow change (a smouldering fire that raises smoke over hours) looks "
            "like drift to a slope model and is left to the `smoke-high` threshold. Trained on "
            "one simulated August day at one site; a site with other weather (fog, storms, "
            "a sensor in the sun) needs its own normal recording."
        ),
        config="""[[detectors]]
id = "fire-front"
sensor = "weather"
quantity = "temperature"
inputs = ["weather.humidity", "smoke.ain0"]
type = "onnx"
model = "environment"      # the shipped model
window = 12
hop = 1
width = 3
features = "slope,std"
severity = "critical\"""",
    ),
)


def edge(*args: str) -> str:
    """Run the ``edge`` command of this environment; return its standard output."""
    exe = shutil.which("edge", path=str(Path(sys.executable).parent)) or "edge"
    done = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"edge {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def normal_scenario(model: Shipped, work: Path) -> Path:
    """The model's scenario with its injections cut: normal running only."""
    text = (SCENARIOS / f"{model.scenario}.toml").read_text()
    cut = text.find("[[simulation.injections]]")
    path = work / f"{model.scenario}-normal.toml"
    path.write_text(text if cut < 0 else text[:cut])
    return path


def record(scenario: str | Path, out: Path, seed: int, duration: float | None = None) -> Path:
    args = ["simulate", "--scenario", str(scenario), "--speed", "max", "--seed", str(seed)]
    if duration is not None:
        args += ["--duration", str(duration)]
    edge(*args, "--record", str(out))
    return out


def evaluate(model_file: Path, recording: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(
        edge("model", "eval", str(model_file), str(recording), "--json")
    )
    return report


def build(model: Shipped, work: Path, out_dir: Path) -> dict[str, Any]:
    print(f"{model.name}: recording {model.train_hours:g} h of normal running", flush=True)
    normal = normal_scenario(model, work)
    training = record(normal, work / f"{model.name}-train.jsonl", TRAIN_SEED,
                      model.train_hours * 3600)  # fmt: skip
    model_file = out_dir / f"{model.name}.onnx"

    def train(recording: str, out: str) -> list[str]:
        return [
            "model", "train", recording, *model.train, "--out", out,
            "--false-alarms-per-day", str(FALSE_ALARMS_PER_DAY), "--name", model.name,
        ]  # fmt: skip

    summary = edge(*train(str(training), str(model_file)))
    summary = summary.replace(str(model_file), f"models/{model.name}.onnx")
    command = train(f"{model.name}-train.jsonl", f"models/{model.name}.onnx")
    print(summary, flush=True)
    runs = []
    for seed in EVAL_SEEDS:
        labelled = record(model.scenario, work / f"{model.name}-eval-{seed}.jsonl", seed)
        runs.append({"seed": seed, **evaluate(model_file, labelled)})
        print(f"  seed {seed}: F1 {runs[-1]['f1']:.2f}, delay {runs[-1]['mean_delay']}", flush=True)
    day = record(normal, work / f"{model.name}-day.jsonl", NORMAL_DAY_SEED, 86400.0)
    normal_day = evaluate(model_file, day)
    print(f"  normal day: {normal_day['false_alarms']} false alarm(s)", flush=True)
    figures = {"train": command, "summary": summary, "runs": runs, "normal_day": normal_day}
    card = card_text(model, model_file, figures)
    (out_dir / f"{model.name}.md").write_text(card)
    return figures


def card_text(model: Shipped, model_file: Path, figures: dict[str, Any]) -> str:
    info = json.loads(edge("model", "info", str(model_file), "--json"))
    meta = info["metadata"]
    runs = figures["runs"]
    day = figures["normal_day"]
    rows = [
        f"| {r['seed']} | {r['caught']}/{r['labels']} | {r['false_alarms']} | {r['f1']:.2f} | "
        f"{_delay(r['mean_delay'])} | {r['windows']} |"
        for r in runs
    ]
    caught = sum(r["caught"] for r in runs)
    labels = sum(r["labels"] for r in runs)
    false_alarms = sum(r["false_alarms"] for r in runs)
    delays = [r["max_delay"] for r in runs if r["max_delay"] is not None]
    window_s = int(meta["window"]) / float(meta["rate"])
    hop_s = int(meta["hop"]) / float(meta["rate"])
    train_cmd = " ".join(["edge", *figures["train"]])
    return f"""# Model card: `{model.name}` (shipped in models/{model.name}.onnx)

{model.about}

| | |
|---|---|
| file | `models/{model.name}.onnx`, {model_file.stat().st_size:,} bytes |
| input | {meta["input"]} |
| threshold | {float(meta["threshold"]):.6g} ({json.loads(meta["calibration"])["method"]}) |
| weights sha256 | `{meta["weights_sha256"]}` |

## Data
Simulated: `edge simulate --scenario {model.scenario}` (edge/sim/scenarios/{model.scenario}.toml)
with its injected anomalies removed, {model.train_hours:g} simulated hours of normal running,
seed {TRAIN_SEED}. No real-world data: the figures below say how the model does on the
simulator's scenario, not on a real machine; retrain on a recording of your own normal running
before trusting it (see "Training" below).

## Training
```
{train_cmd}
```
Fitted on the first 75 % of the normal windows; the threshold is set on the last 25 % (after a
gap of overlapping windows) for at most {FALSE_ALARMS_PER_DAY} alarm windows a day:

```
{figures["summary"].strip()}
```

## Figures (`edge model eval`)
On the labelled scenario `{model.scenario}` (one hour, the anomaly from t = 2100 s), five seeds
never used in training; one window every {hop_s:g} s, each spanning {window_s:g} s. Delay is from
the label's start to the first alarm.

| seed | labels caught | false alarms | F1 | mean delay | windows |
|---|---|---|---|---|---|
{chr(10).join(rows)}

- In all: {caught}/{labels} labels caught, {false_alarms} false alarm(s), worst delay
  {_delay(max(delays) if delays else None)}.
- A normal simulated day (86,400 s, seed {NORMAL_DAY_SEED}, no anomaly):
  **{day["false_alarms"]} false alarm(s)** in {day["windows"]:,} windows.

## Limits
{model.limits}

Reproduce: `.venv/bin/python tools/build_models.py --only {model.name}` (rebuilds the model and
this card), or score it yourself with `edge model eval models/{model.name}.onnx REC.jsonl` on
a recording from `edge simulate --scenario {model.scenario} --seed N --record REC.jsonl`.

## Use
```toml
{model.config}
```
`model = "{model.name}"` names the shipped file; `window`, `hop`, `width` and `features` must be
the ones above (the model's metadata holds them: `edge model info models/{model.name}.onnx`).
"""


def _delay(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=[m.name for m in SHIPPED], help="one model")
    parser.add_argument("--work", type=Path, help="keep recordings here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "models", help="where models go")
    args = parser.parse_args(argv)
    chosen = [m for m in SHIPPED if args.only in (None, m.name)]
    with tempfile.TemporaryDirectory(prefix="edgeline-models-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for model in chosen:
            build(model, work, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
