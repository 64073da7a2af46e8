"""The `Finding` record: one thing the lab learned, with the evidence it rests on."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FindingKind = Literal["insight", "failure", "principle"]


class Finding(BaseModel):
    schema_version: int = 1
    id: str
    text: str
    kind: FindingKind
    task: str
    candidate_ids: list[str] = Field(default_factory=list)
    evidence: dict[str, float] = Field(default_factory=dict)
    change: str = ""        # the kind of change it is about, when it is about one
    embedding_id: str = ""  # the id of its vector in the store (equal to `id` once stored)
