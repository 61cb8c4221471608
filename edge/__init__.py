"""edgeline's runtime: config, clock, scheduler, events, outbox, uplink, commands and CLI."""

__version__ = "0.1.0"
