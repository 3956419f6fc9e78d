"""HTTP routers, one per resource; dependencies in ``deps``."""
