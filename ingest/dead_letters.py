"""Dead letters as JSON lines: one object per rejected message, payload base64-encoded."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path


class JsonlDeadLetters:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def write(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None:
        record = {
            "received_at": received_at.isoformat(),
            "topic": topic,
            "reason": reason,
            "detail": detail,
            "payload_b64": base64.b64encode(payload).decode(),
        }
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
