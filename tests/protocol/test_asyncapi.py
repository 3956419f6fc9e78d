from pathlib import Path

import yaml

from protocol import CASE_EVENTS_TOPIC, INGEST_STATE_TOPIC, Channel
from protocol.asyncapi import build_document, render

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_committed_document_matches_the_models() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "docs/asyncapi.yaml is stale: run `python -m protocol.asyncapi > docs/asyncapi.yaml`"
    )


def test_every_reference_resolves() -> None:
    document = build_document()

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(document):
        target: object = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict), ref
            target = target[part]


def test_document_is_asyncapi_3() -> None:
    document = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    assert document["asyncapi"].startswith("3.")
    assert set(document["channels"]) == {channel.value for channel in Channel} | {
        "ingest",
        "case-events",
    }
    assert document["channels"]["ingest"]["address"] == INGEST_STATE_TOPIC
    assert document["channels"]["case-events"]["address"] == CASE_EVENTS_TOPIC
    for name, channel in document["channels"].items():  # every channel has a message to send
        assert name == "ingest" or channel["address"].endswith("/" + name)
        assert {op["channel"]["$ref"] for op in document["operations"].values()} >= {
            f"#/channels/{name}"
        }
