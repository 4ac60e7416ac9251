"""A label rule: a name, a version and a DuckDB SQL expression over an entity's state fields."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from labelstore.rules.exceptions import InvalidRuleError
from labelstore.yamlfiles import parse_yaml_model

ValueType = Literal["string", "boolean", "long", "double"]


class LabelRule(BaseModel):
    """The expression returns the label's value, or NULL to abstain (no label)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)
    version: int = Field(ge=1)
    entity_type: str
    expression: str = Field(min_length=1)
    value_type: ValueType = "string"
    description: str = ""
    maturity_days: float | None = Field(
        default=None, gt=0,
        description="the label can still change this long after the entity's first event; mature after that",
    )

    @property
    def key(self) -> str:
        return f"{self.name} v{self.version}"


def parse_rule(text: str, *, origin: str = "<rule>") -> LabelRule:
    return parse_yaml_model(LabelRule, text, origin=origin, error=InvalidRuleError)


def load_rules() -> list[LabelRule]:
    """The rules the current label repository starts with: each label's first version."""
    from labelstore.repository import current

    return current().initial_rules()
