"""The simulator: the unchanged runtime on simulated hardware, with everything around it.

:mod:`~edge.sim.scenario` reads scenarios (a config plus a ``[simulation]`` table; the
built-in ones are in ``scenarios/``); :mod:`~edge.sim.hardware` builds the simulated buses,
chips and pins from ``sensors.sim`` and drives presses and faults;
:mod:`~edge.sim.simulator` runs one or more devices on their clocks, with power cuts and
link faults (:mod:`~edge.sim.linkproxy`); :mod:`~edge.sim.fleet` gives each device of a
fleet its command key and the process the files they need; :mod:`~edge.sim.session` is
what ``edge simulate`` does from start to summary; :mod:`~edge.sim.broker` the embedded
broker (amqtt); :mod:`~edge.sim.console`, :mod:`~edge.sim.totals` (a fleet's lines),
:mod:`~edge.sim.recording`, :mod:`~edge.sim.labels` and :mod:`~edge.sim.plot` show,
record, score and draw a run.

May import the runtime and everything below it, ``sensors.sim`` and :mod:`edge.cloud`;
nothing on the device path imports this package.
"""
