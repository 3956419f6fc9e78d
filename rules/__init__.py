"""Pure, deterministic, event-time rule engine. No I/O and no clock reads in here."""

from rules.alerts import Alert, CaseTarget, Evidence
from rules.engine import EngineStats, RuleEngine
from rules.schema import (
    DEFAULT_RULES_FILE,
    RuleError,
    RuleSet,
    ThresholdRule,
    load_rules,
    parse_rules,
)

__all__ = [
    "DEFAULT_RULES_FILE",
    "Alert",
    "CaseTarget",
    "EngineStats",
    "Evidence",
    "RuleEngine",
    "RuleError",
    "RuleSet",
    "ThresholdRule",
    "load_rules",
    "parse_rules",
]
