"""Composition root: the `citysense` CLI wires the packages into running services."""
