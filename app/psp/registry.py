"""Which connectors exist and how to build them, chosen by configuration.

``PSP_CONNECTORS`` (app config or environment, a dict or its JSON) maps a connector name to a factory,
either a dotted path (``"app.psp.sandbox:SandboxConnector"`` or ``"app.psp.sandbox.SandboxConnector"``)
or a dict ``{"factory": "<dotted path>", ...options}``. It is merged over the defaults: one sandbox
connector per entry of ``SANDBOX_ACQUIRER_URLS`` and ``stripe``. A factory is a class with a
``from_config(name, config, options, credentials)`` classmethod, or any callable with that signature.

Each vault's token format comes from its connectors' class (``token_pattern``, see
app/psp/interfaces.py): ``token_patterns`` maps vault names to them for the payments service.
"""
from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from app.psp.interfaces import Connector
from app.psp.sandbox import parse_acquirer_urls
from app.psp.wire import ISO_MINOR_UNITS, WireRules

SANDBOX_FACTORY = "app.psp.sandbox:SandboxConnector"
STRIPE_FACTORY = "app.psp.stripe_connector:StripeConnector"
# A vault whose connectors declare no token format: an id of its own kind ("prefix_" and letters, digits
# or underscores), as every PSP's are. Never a bare number, so never a card number.
GENERIC_TOKEN_PATTERN = re.compile(r"^[A-Za-z]{1,16}_[A-Za-z0-9_]{1,230}$")


@dataclass(frozen=True)
class ConnectorSpec:
    """A configured connector: its name, factory, vault and options (no instance yet)."""

    name: str
    factory: str
    vault: str
    test_only: bool
    # Connectors that take per-merchant credentials (Stripe) are built per merchant and mode.
    needs_credentials: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)


def import_string(path: str) -> Any:
    """Import ``package.module:attr`` or ``package.module.attr``."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"not a dotted path: {path!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def config_value(config: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A setting from the app config, else the environment (the launcher's processes), else ``default``."""
    value = config.get(name)
    if value in (None, ""):
        value = os.environ.get(name)
    return default if value in (None, "") else value


def _json_setting(config: Mapping[str, Any], name: str) -> Any:
    value = config_value(config, name)
    if isinstance(value, str):
        return json.loads(value)
    return value


def connector_specs(config: Mapping[str, Any]) -> dict[str, ConnectorSpec]:
    """Every configured connector by name, in configuration order (sandbox acquirers first)."""
    raw: dict[str, dict[str, Any]] = {}
    for name, url in parse_acquirer_urls(config_value(config, "SANDBOX_ACQUIRER_URLS", "")).items():
        raw[name] = {"factory": SANDBOX_FACTORY, "base_url": url}
    raw["stripe"] = {"factory": STRIPE_FACTORY}
    for name, value in (_json_setting(config, "PSP_CONNECTORS") or {}).items():
        if value is None:
            raw.pop(name, None)  # `"stripe": null` removes a default connector
            continue
        raw[name] = {"factory": value} if isinstance(value, str) else dict(value)
    specs = {}
    for name, options in raw.items():
        factory_path = options.pop("factory")
        factory = import_string(factory_path)
        specs[name] = ConnectorSpec(
            name=name, factory=factory_path,
            vault=options.pop("vault", None) or getattr(factory, "vault", name),
            test_only=bool(options.pop("test_only", getattr(factory, "test_only", False))),
            needs_credentials=bool(options.pop("needs_credentials", getattr(factory, "needs_credentials", False))),
            options=options,
        )
    return specs


def token_patterns(config: Mapping[str, Any]) -> dict[str, re.Pattern[str]]:
    """Each vault's token format, as the first of its connectors' classes declares it (the built-in
    sandbox and Stripe vaults' always, configured or not)."""
    patterns: dict[str, re.Pattern[str]] = {}
    for spec in connector_specs(config).values():
        declared = getattr(import_string(spec.factory), "token_pattern", None)
        patterns.setdefault(spec.vault, declared or GENERIC_TOKEN_PATTERN)
    for factory in (SANDBOX_FACTORY, STRIPE_FACTORY):
        connector = import_string(factory)
        patterns.setdefault(connector.vault, connector.token_pattern)
    return patterns


def connector_for(name: str, config: Mapping[str, Any], *, credentials: Mapping[str, Any] | None = None,
                  specs: Mapping[str, ConnectorSpec] | None = None, livemode: bool | None = None) -> Connector:
    """Build the connector called ``name`` from the configuration (and a merchant's credentials if any).

    ``livemode``, when known, is handed to the factory as ``options["livemode"]``: the platform's account
    at a PSP may differ per mode (Stripe: STRIPE_API_KEY_TEST / STRIPE_API_KEY_LIVE)."""
    specs = specs if specs is not None else connector_specs(config)
    spec = specs.get(name)
    if spec is None:
        raise KeyError(f"no PSP connector named {name!r} is configured")
    factory = import_string(spec.factory)
    settings = _ConfigView(config)
    build = getattr(factory, "from_config", factory)
    options = spec.options if livemode is None else {**spec.options, "livemode": bool(livemode)}
    return build(name, settings, options, credentials)


def wire_rules(specs: Mapping[str, ConnectorSpec], vault: str) -> tuple[WireRules, ...]:
    """The currency rules of every connector on ``vault`` (its factory's ``wire``; a factory naming none
    speaks ISO 4217 minor units, as the Connector protocol says), one per distinct set of rules.

    All of them, not only those a route picks: an authorization may fail over to any connector of its
    vault, and every connector of one vault is the same PSP anyway.
    """
    found: list[WireRules] = []
    for spec in specs.values():
        rules = getattr(import_string(spec.factory), "wire", ISO_MINOR_UNITS) if spec.vault == vault else None
        if rules is not None and rules not in found:
            found.append(rules)
    return tuple(found)


class _ConfigView(dict):
    """The app config with the environment as fallback, as one mapping for connector factories."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)

    def get(self, key, default=None):
        value = dict.get(self, key)
        if value in (None, ""):
            value = os.environ.get(key)
        return default if value in (None, "") else value
