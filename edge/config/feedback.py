"""The ``[feedback]`` section: operators' verdicts on alarms, and thresholds they may move.

Off by default. With ``enabled`` the device keeps, for each alarm of a ``threshold``,
``rate``, ``zscore`` or ``adaptive`` detector, the ``window`` readings that raised it, and
stores the verdicts of ``label`` commands beside them (so it needs ``[commands]``). With
``adjust`` as well, each verdict may move that detector's threshold by the rule of
:mod:`models.tuning`, never further than ``max_change`` x |configured| from its configured
value; the ``feedback`` command's ``reset`` puts the configured thresholds back.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeedbackConfig:
    enabled: bool = field(
        default=False,
        metadata={
            "doc": "keep each alarm's window of readings and store operators' verdicts on "
            "them (the `label` command; needs [commands])"
        },
    )
    adjust: bool = field(
        default=False,
        metadata={
            "doc": "let verdicts move the thresholds of threshold, rate, zscore and adaptive "
            "detectors (each change a health event; `feedback` command `reset` undoes them)"
        },
    )
    step: float = field(
        default=0.5,
        metadata={
            "min": 0.01,
            "max": 1.0,
            "doc": "fraction of the way a verdict moves a threshold: a false alarm toward its "
            "score, a miss toward the lower bound",
        },
    )
    max_change: float = field(
        default=0.5,
        metadata={
            "min": 0.0,
            "max": 10.0,
            "doc": "bounds: a threshold stays within configured +/- max_change x |configured|",
        },
    )
    margin: float = field(
        default=0.02,
        metadata={
            "min": 0.0,
            "max": 0.5,
            "doc": "a threshold stays this fraction of |configured| below the lowest score of "
            "an alarm labelled true_alarm",
        },
    )
    window: int = field(
        default=60,
        metadata={"min": 1, "max": 10_000, "doc": "readings kept with each alarm"},
    )
