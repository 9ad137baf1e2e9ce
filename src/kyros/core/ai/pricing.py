"""Where a model's price comes from, before a call: settings, the price list, or nowhere.

In order: a price set in settings — the model's ``[models.ALIAS]`` entry, ``[prices."ID"]`` for
its alias or litellm id, ``[prices."URL"]`` for its ``api_base``; then litellm's price list; then,
for a server on a loopback address (and ``free_loopback``, the default), free; else unknown.
After a call, a cost the provider reported in its answer beats the price list (see
:func:`kyros.core.ai.budget.priced`). ADR 0015 gives the reasons.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from urllib.parse import urlsplit

from kyros.core.ai.models import ResolvedModel
from kyros.settings.model import PriceSpec, Settings

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(api_base: str | None) -> bool:
    """Whether ``api_base`` names this machine (127.0.0.0/8, ::1, localhost): no DNS lookup."""
    if not api_base:
        return False
    try:
        host = (urlsplit(api_base).hostname or "").lower()
    except ValueError:
        return False
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _spec_for(settings: Settings, resolved: ResolvedModel) -> tuple[PriceSpec, str] | None:
    for key in (resolved.name, resolved.litellm_model, resolved.api_base):
        if key and key in settings.prices:
            return settings.prices[key], f'prices."{key}"'
    return None


def with_prices(resolved: ResolvedModel, settings: Settings) -> ResolvedModel:
    """``resolved`` with the prices settings give it and whether it may count as free."""
    if resolved.is_demo:
        return resolved
    free = settings.free_loopback and is_loopback(resolved.api_base)
    if resolved.price_in is not None or resolved.price_out is not None:
        return replace(resolved, price_from=f"[models.{resolved.name}]", free_loopback=free)
    found = _spec_for(settings, resolved)
    if found is None:
        return replace(resolved, free_loopback=free) if free else resolved
    spec, where = found
    return replace(
        resolved,
        price_in=spec.price_in,
        price_out=spec.price_out,
        price_cached=spec.price_cached,
        price_from=where,
        free_loopback=free,
    )


def setting_line(resolved: ResolvedModel) -> str:
    """The one settings line that would give ``resolved`` a price (USD per 1M tokens)."""
    if resolved.aliased:
        return (
            f"[models.{resolved.name}] price_in = …, price_out = …  in config.toml "
            "(USD per 1M tokens; 0 for a free server)"
        )
    key = resolved.name
    return (
        f'prices."{key}" = {{ price_in = …, price_out = … }}  in config.toml '
        "(USD per 1M tokens; 0 for a free server; a key may also be an api_base URL)"
    )
