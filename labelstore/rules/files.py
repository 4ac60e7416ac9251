"""Rule files: YAML (the fields of ``LabelRule``) or SQL whose leading ``-- key: value`` comments
give the fields and whose remaining text is the expression:

    -- name: account_takeover
    -- version: 2
    -- entity_type: account
    -- description: a password reset after failed logins counts too
    CASE WHEN ... END
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from labelstore.declarations import EntityDeclaration, load_declarations
from labelstore.rules.exceptions import InvalidRuleError
from labelstore.rules.model import LabelRule, parse_rule
from labelstore.rules.validation import validate_rule

HEADER = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*?)\s*$")


def read_rule_file(path: Path, declarations: Mapping[str, EntityDeclaration] | None = None) -> LabelRule:
    """Parse and validate a rule file against the declarations (default: the current repository's);
    errors name the file and the problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidRuleError(f"{path}: cannot read: {exc.strerror}") from None
    rule = _parse_sql(text, path.name) if path.suffix == ".sql" else parse_rule(text, origin=path.name)
    declarations = load_declarations() if declarations is None else declarations
    if rule.entity_type not in declarations:
        raise InvalidRuleError(f"{path.name}: unknown entity_type {rule.entity_type!r}; "
                               f"known: {', '.join(sorted(declarations))}")
    try:
        validate_rule(rule, declarations[rule.entity_type])
    except InvalidRuleError as exc:
        raise InvalidRuleError(f"{path.name}: {exc}") from None
    return rule


def _parse_sql(text: str, origin: str) -> LabelRule:
    fields: dict[str, str] = {}
    lines = text.splitlines()
    body_start = 0
    for index, line in enumerate(lines):
        match = HEADER.match(line)
        if match:
            fields[match.group(1)] = match.group(2)
            body_start = index + 1
        elif line.strip():
            break
    expression = "\n".join(lines[body_start:]).strip()
    try:
        return LabelRule.model_validate({**fields, "expression": expression})
    except ValueError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in getattr(exc, "errors", lambda: [])()]
        raise InvalidRuleError(f"{origin}: " + ("; ".join(problems) or str(exc))) from None
