"""The one base model of every config block, the core's and each target's. Pure (pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config block: unknown keys refused, aliases accepted, immutable once validated."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
