"""Pure, deterministic, event-time rule engine. No I/O and no clock reads in here."""

from rules.alerts import EMERGENCY, Alert, CaseTarget, Evidence, Severity
from rules.clock import ClockPolicy
from rules.engine import RuleEngine
from rules.schema import (
    DEFAULT_RULES_FILE,
    ReadOnlyRulesError,
    Rule,
    RuleError,
    RuleSet,
    ThresholdRule,
    load_rules,
    parse_rules,
)
from rules.snapshot import SnapshotError, restore, snapshot
from rules.stats import EngineStats

__all__ = [
    "DEFAULT_RULES_FILE",
    "EMERGENCY",
    "Alert",
    "CaseTarget",
    "ClockPolicy",
    "EngineStats",
    "Evidence",
    "ReadOnlyRulesError",
    "Rule",
    "RuleEngine",
    "RuleError",
    "RuleSet",
    "Severity",
    "SnapshotError",
    "ThresholdRule",
    "load_rules",
    "parse_rules",
    "restore",
    "snapshot",
]
