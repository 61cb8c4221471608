"""Offline tools for detectors: train, evaluate and inspect models; replay a series.

:mod:`~edge.modeltools.series` takes a sensor's series from a recording and turns it into
feature windows; :mod:`~edge.modeltools.train`, :mod:`~edge.modeltools.evaluate` and
:mod:`~edge.modeltools.info` are ``edge model train|eval|info``;
:mod:`~edge.modeltools.rollout` is ``edge model rollout`` (a model to a fleet, over signed
commands through :mod:`edge.uplink.operator`);
:mod:`~edge.modeltools.detect` is ``edge detect`` (a CSV or recording through any detector,
strictly streaming).

May import the simulator's recordings and labels (:mod:`edge.sim`), :mod:`edge.config`,
:mod:`edge.uplink`, :mod:`edge.runtime` (what a command's arguments look like) and ``models``;
the device never imports this package.
"""
