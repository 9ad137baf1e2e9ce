"""The model catalogue: aliases from settings, role defaults and fallbacks, and autodetection.

A run names a model by alias (``[models.fast]`` in config.toml), by litellm id, or not at all —
then its role's model (``[roles.plan]``), then the ``model`` setting, then the first provider
that has a key. Fallbacks come from the role: a chain may cross providers. Nothing here calls a
provider; :meth:`Catalogue.entries` reads prices and limits through ``info`` when given one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kyros.core.ai.backend import ModelInfo
from kyros.core.ai.budget import ledger_source, prices_of
from kyros.core.ai.demo import DEMO_MODEL
from kyros.core.ai.models import (
    AUTODETECT,
    KEYLESS,
    PROVIDER_KEYS,
    ResolvedModel,
    family,
    resolve_model,
)
from kyros.core.ai.pricing import setting_line, with_prices
from kyros.errors import KyrosError, ModelNotConfigured
from kyros.settings import ROLES
from kyros.settings.model import ModelSpec, Settings

#: Which role a run kind's own calls play (a pipeline's children have their own kinds).
ROLE_OF_KIND = {"plan": "plan", "implement": "implement", "critic": "critic", "pipeline": "plan"}
PER_MILLION = 1_000_000


def key_var(provider: str) -> str:
    """The environment variable that holds ``provider``'s key (litellm's own names)."""
    return PROVIDER_KEYS.get(provider) or f"{provider.upper()}_API_KEY"


class Catalogue:
    """Resolves model names for runs. ``keys`` returns ``{ENV_VAR: key}`` for every provider with
    a key right now (environment, keyring or kyros's credentials file)."""

    def __init__(
        self,
        settings: Settings,
        keys: Callable[[], dict[str, str]],
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self._refresh = refresh

    def choosing(self, values: dict[str, Any]) -> Catalogue:
        """This catalogue with some settings (``model``, ``api_base``) chosen for one run."""
        return Catalogue(self.settings.model_copy(update=values), self.keys, self._refresh)

    async def refresh(self) -> None:
        """Re-read the key sources now (a key may have been stored a moment ago)."""
        if self._refresh is not None:
            await self._refresh()

    # --- resolution -------------------------------------------------------------------------

    def role_model(self, role: str | None) -> str | None:
        """The model a role uses when the run and its agent name none."""
        spec = self.settings.roles.get(role or "")
        return (spec.model if spec else None) or self.settings.model

    def resolve(
        self, requested: str | None, api_base: str | None = None, *, role: str | None = None
    ) -> ResolvedModel:
        """The model to call for ``requested`` (an alias, a litellm id, ``demo`` or None)."""
        name = requested or self.role_model(role)
        spec = self.settings.models.get(name or "")
        if spec is not None and name is not None:
            resolved = self._from_spec(name, spec, api_base)
        else:
            resolved = resolve_model(name, api_base or self.settings.api_base, self.keys())
        return with_prices(resolved, self.settings)

    def _from_spec(self, alias: str, spec: ModelSpec, api_base: str | None) -> ResolvedModel:
        base = api_base or spec.api_base
        provider = family(spec.model)
        key: str | None = None
        if spec.key != "none" and provider not in KEYLESS:
            wanted = spec.key or provider
            key = self.keys().get(key_var(wanted))
            if key is None and not base:
                raise ModelNotConfigured(
                    f"model {alias!r} ({spec.model}) needs a {wanted} key: run "
                    f"`kyros auth set-key {wanted}` or export {key_var(wanted)}"
                )
        if base and not key:
            key = "sk-no-key-required"  # the OpenAI SDK insists on a key; local servers ignore it
        return ResolvedModel(
            name=alias,
            litellm_model=spec.model,
            provider=provider,
            api_base=base,
            api_key=key,
            context_window=spec.context_window,
            max_output=spec.max_output,
            price_in=spec.price_in,
            price_out=spec.price_out,
            price_cached=spec.price_cached,
            aliased=True,
        )

    def chain(self, role: str | None, primary: ResolvedModel) -> list[ResolvedModel]:
        """``primary`` then the role's fallbacks that can be called now, each deployment once."""
        chain = [primary]
        spec = self.settings.roles.get(role or "")
        for name in spec.fallbacks if spec else ():
            try:
                candidate = self.resolve(name)
            except KyrosError:
                continue  # a fallback without a key is skipped; `kyros models list` says why
            if all(c.deployment != candidate.deployment for c in chain):
                chain.append(candidate)
        return chain

    def other_family(self, model: str | None) -> str | None:
        """A callable model of another provider family than ``model``'s: a second opinion."""
        if not model:
            return None
        try:
            mine = family(self.resolve(model).litellm_model)
        except KyrosError:
            mine = family(model)
        spec = self.settings.roles.get("critic")
        candidates = [*(spec.fallbacks if spec else ()), *self.settings.models]
        for name in candidates:
            try:
                resolved = self.resolve(name)
            except KyrosError:
                continue
            if resolved.provider != mine:
                return str(name)
        keys = self.keys()
        for env_name, candidate in AUTODETECT:
            if keys.get(env_name) and family(candidate) != mine:
                return candidate
        return None

    # --- listing ----------------------------------------------------------------------------

    def entries(self, info: Callable[[str], ModelInfo] | None = None) -> list[dict[str, Any]]:
        """Every model kyros could use, configured or detected, with why one is unavailable."""
        keys = self.keys()
        roles = self._roles_by_model()
        out: list[dict[str, Any]] = []
        seen: set[str] = set()

        def add(name: str, source: str) -> None:
            if name in seen:
                return
            seen.add(name)
            out.append(self._entry(name, source, info, keys, roles.get(name, [])))

        for alias in self.settings.models:
            add(alias, "config [models]")
        for role in ROLES:
            spec = self.settings.roles.get(role)
            for name in [spec.model, *spec.fallbacks] if spec else ():
                if name:
                    add(name, f"config [roles.{role}]")
        if self.settings.model:
            add(self.settings.model, "config model")
        for env_name, candidate in AUTODETECT:
            if keys.get(env_name):
                add(candidate, f"detected from {env_name}")
        add(DEMO_MODEL, "built in (scripted replies, no provider)")
        return out

    def entry(self, name: str, info: Callable[[str], ModelInfo] | None = None) -> dict[str, Any]:
        """One model by name, as :meth:`entries` lists it; a litellm id outside the catalogue
        too (``source`` says so), so its price and where it comes from can be looked up."""
        for listed in self.entries(info):
            if listed["name"] == name:
                return listed
        return self._entry(name, "named (not in the catalogue)", info, self.keys(), [])

    def _entry(
        self,
        name: str,
        source: str,
        info: Callable[[str], ModelInfo] | None,
        keys: dict[str, str],
        roles: list[str],
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "source": source, "roles": roles}
        try:
            resolved = self.resolve(name)
        except KyrosError as exc:
            spec = self.settings.models.get(name)
            entry.update(
                model=spec.model if spec else name,
                provider=family(spec.model if spec else name),
                api_base=spec.api_base if spec else None,
                available=False,
                problem=exc.message.splitlines()[0],
            )
            return entry
        entry.update(
            model=resolved.litellm_model if not resolved.is_demo else DEMO_MODEL,
            provider=resolved.provider,
            api_base=resolved.api_base,
            available=True,
            problem=None,
            key=self._key_source(resolved, keys),
        )
        entry.update(self._limits(name, resolved, info))
        return entry

    def _roles_by_model(self) -> dict[str, list[str]]:
        by: dict[str, list[str]] = {}
        for role in ROLES:
            spec = self.settings.roles.get(role)
            primary = (spec.model if spec else None) or self.settings.model
            if primary:
                by.setdefault(primary, []).append(role)
            for name in spec.fallbacks if spec else ():
                by.setdefault(name, []).append(f"{role} fallback")
        return by

    @staticmethod
    def _key_source(resolved: ResolvedModel, keys: dict[str, str]) -> str | None:
        if resolved.is_demo or resolved.provider in KEYLESS:
            return None
        var = key_var(resolved.provider)
        if keys.get(var):
            return var
        return "none needed" if resolved.api_base else None

    @staticmethod
    def _limits(
        name: str, resolved: ResolvedModel, info: Callable[[str], ModelInfo] | None
    ) -> dict[str, Any]:
        known = info(resolved.litellm_model) if info and not resolved.is_demo else ModelInfo()
        prices = prices_of(resolved, known)

        def per_million(per_token: float | None) -> float | None:
            return round(per_token * PER_MILLION, 6) if per_token is not None else None

        return {
            "context_window": resolved.context_window or known.context_window,
            "max_output": resolved.max_output or known.max_output,
            "price_in": per_million(prices.input),
            "price_out": per_million(prices.output),
            "price_cached": per_million(prices.cached),
            "price_source": ledger_source(prices),
            "price_detail": prices.where if prices.known else f"set it: {setting_line(resolved)}",
            "tools": known.tools,
            "vision": known.vision,
        }
