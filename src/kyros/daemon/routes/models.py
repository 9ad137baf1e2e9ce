"""The model catalogue: every model kyros could use, one of them, and a test call to one.

Model names may contain ``/`` (litellm ids such as ``openai/gpt-4.1-mini``): the routes take
the rest of the path as the name.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from kyros.core.app import Core
from kyros.daemon.routes.deps import core
from kyros.protocol import MAX_NAME_CHARS, ModelEntry, ModelList, ModelTest

router = APIRouter(prefix="/v1/models", tags=["models"])

ModelName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="An alias, a litellm id (may contain `/`) or `demo`.",
    ),
]


@router.get("", response_model=ModelList)
async def list_models(c: Annotated[Core, Depends(core)]) -> ModelList:
    """Every configured or detected model with its roles, limits, prices, availability and
    cooldown; and per role the names its calls try in order."""
    entries = await c.models()
    return ModelList(models=[ModelEntry.model_validate(e) for e in entries], roles=c.model_roles())


@router.post("/{name:path}/test", response_model=ModelTest)
async def test_model(name: ModelName, c: Annotated[Core, Depends(core)]) -> ModelTest:
    """Call the model once with a one-word prompt (no fallback, no retry) and report latency,
    tokens, cost and the reply, or the classified failure (``ok`` false). The call is written
    to the ledger with role ``test``. 404 for an unknown name, 422 when it cannot be called
    (no key)."""
    return ModelTest.model_validate(await c.test_model(name))


@router.get("/{name:path}", response_model=ModelEntry)
async def get_model(name: ModelName, c: Annotated[Core, Depends(core)]) -> ModelEntry:
    """One model of the list by name, or any ``provider/model`` id, with its price and where
    the price comes from (``price_source``). 404 for a name kyros could not call."""
    return ModelEntry.model_validate(await c.model(name))
