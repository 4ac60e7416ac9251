"""Read a YAML document into a pydantic model; problems become one error naming file and path."""

from __future__ import annotations

from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from labelstore.errors import LabelstoreError

Model = TypeVar("Model", bound=BaseModel)


def parse_yaml_model(model: type[Model], text: str, *, origin: str, error: type[LabelstoreError]) -> Model:
    try:
        return model.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise error(f"{origin}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors(include_url=False)]
        raise error(f"{origin}: " + "; ".join(problems)) from exc
