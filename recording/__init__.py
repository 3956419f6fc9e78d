"""Recordings of MQTT traffic: the file format, capture from a live broker, replay into one.

A product feature, not a simulator's: ingest records what it receives (``ingest.sinks.recorder``),
engineers capture a street's traffic (``citysense record``) and backtest rule changes against it
(``citysense backtest``), test labs replay it into a running system (``citysense replay``). The
simulator writes the same format for its scenarios. Format: docs/recording-format.md.
"""
