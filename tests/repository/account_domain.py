"""A second domain, written here and nowhere in the library: account-takeover labels.

Accounts log in, fail to log in, reset passwords, add devices, and sometimes a chargeback arrives
weeks later; `account_takeover` is positive once a chargeback follows a password reset or a new
device on an account, negative otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

NAMESPACE = "acme.account"


def _event(name: str, fields: list[dict]) -> dict:
    return {"type": "record", "name": name, "namespace": NAMESPACE, "labelstore.role": "event", "fields": fields}


SCHEMAS = {
    "LoginSucceeded": _event("LoginSucceeded", [
        {"name": "ip", "type": "string", "labelstore.constraints": {"min_length": 1}},
        {"name": "device_id", "type": ["null", "string"], "default": None},
        {"name": "country", "type": "string", "labelstore.constraints": {"pattern": "^[A-Z]{2}$"}},
    ]),
    "LoginFailed": _event("LoginFailed", [
        {"name": "ip", "type": "string"},
        {"name": "reason", "type": {"type": "enum", "name": "FailureReason", "namespace": NAMESPACE,
                                    "symbols": ["BAD_PASSWORD", "BAD_OTP", "LOCKED"]}},
    ]),
    "PasswordReset": _event("PasswordReset", [
        {"name": "channel", "type": {"type": "enum", "name": "ResetChannel", "namespace": NAMESPACE,
                                     "symbols": ["EMAIL", "SMS", "SUPPORT"]}},
    ]),
    "DeviceAdded": _event("DeviceAdded", [{"name": "device_id", "type": "string"}]),
    "ChargebackFiled": _event("ChargebackFiled", [
        {"name": "amount_cents", "type": "long", "labelstore.constraints": {"ge": 0}},
        {"name": "reason_code", "type": "string"},
    ]),
}

DECLARATION = """\
entity_type: account
fields:
  failed_logins: {type: long, default: 0}
  password_resets: {type: long, default: 0}
  chargebacks: {type: long, default: 0}
  devices: set<string>
  last_country: string
  first_event_time: timestamp
  last_event_time: timestamp
events:
  LoginSucceeded:
    - {op: set, field: last_country, from: payload.country}
    - {op: add, field: devices, from: payload.device_id, if_present: true}
  LoginFailed:
    - {op: increment, field: failed_logins}
  PasswordReset:
    - {op: increment, field: password_resets}
  DeviceAdded:
    - {op: add, field: devices, from: payload.device_id}
  ChargebackFiled:
    - {op: increment, field: chargebacks}
every_event:
  - {op: set_once, field: first_event_time, from: event_time}
  - {op: set, field: last_event_time, from: event_time}
"""

RULE_V1 = """\
-- name: account_takeover
-- version: 1
-- entity_type: account
-- maturity_days: 60
-- description: a chargeback after a password reset or on an account with more than one device
CASE
  WHEN chargebacks > 0 AND (password_resets > 0 OR len(devices) > 1) THEN 'positive'
  WHEN first_event_time IS NOT NULL THEN 'negative'
END
"""

RULE_V2 = """\
-- name: account_takeover
-- version: 2
-- entity_type: account
-- maturity_days: 60
-- description: v1, and three failed logins followed by a password reset count as a takeover too
CASE
  WHEN chargebacks > 0 AND (password_resets > 0 OR len(devices) > 1) THEN 'positive'
  WHEN failed_logins >= 3 AND password_resets > 0 THEN 'positive'
  WHEN first_event_time IS NOT NULL THEN 'negative'
END
"""


def write_domain(root: Path) -> None:
    """The account domain's schemas, declaration and first rule, into an (initialised) repository."""
    folder = root / "schemas" / "account"
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in SCHEMAS.items():
        (folder / f"{NAMESPACE}.{name}.avsc").write_text(json.dumps(schema, indent=2))
    (root / "entities" / "account.yaml").write_text(DECLARATION)
    (root / "rules" / "account_takeover.v1.sql").write_text(RULE_V1)


def evolve_domain(root: Path) -> None:
    """A new optional field (LoginFailed.country) and a new event type (MfaEnabled) with a field."""
    folder = root / "schemas" / "account"
    failed = json.loads((folder / f"{NAMESPACE}.LoginFailed.avsc").read_text())
    failed["fields"].append({"name": "country", "type": ["null", "string"], "default": None})
    (folder / f"{NAMESPACE}.LoginFailed.avsc").write_text(json.dumps(failed, indent=2))
    mfa = _event("MfaEnabled", [{"name": "method", "type": "string"}])
    (folder / f"{NAMESPACE}.MfaEnabled.avsc").write_text(json.dumps(mfa, indent=2))
    declaration = DECLARATION.replace("  last_country: string\n", "  last_country: string\n  mfa_method: string\n")
    declaration = declaration.replace("  LoginFailed:\n    - {op: increment, field: failed_logins}\n",
                                      "  LoginFailed:\n    - {op: increment, field: failed_logins}\n"
                                      "    - {op: set, field: last_country, from: payload.country, if_present: true}\n"
                                      "  MfaEnabled:\n    - {op: set, field: mfa_method, from: payload.method}\n")
    (root / "entities" / "account.yaml").write_text(declaration)
