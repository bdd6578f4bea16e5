"""Segment tags on Intercom contacts and companies, in the fewest calls the API allows.

- Adding, contacts: ``POST /tags {"name", "users": [{"id"}...]}`` -- one call per tag per batch, for every
  contact of the batch gaining it (``tag_multiple_users_request``; users by Intercom id only).
- Removing, contacts: the 2.14 schema has no bulk untag for users, so ``DELETE /contacts/{id}/tags/{tag_id}``
  per contact and tag -- the cheapest form the API documents.
- Companies: both directions in bulk, ``POST /tags {"name", "companies": [{"id", "untag"?}...]}``, one call
  per tag and direction per batch.

A bulk call that fails is retried per object, so one bad id (a contact deleted a moment ago) fails only its
own record. Only tags accoil-sync applied (the previous ``tags`` value) are ever removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

from intercom.types import (
    CreateOrUpdateTagRequest,
    TagCompanyRequest,
    TagCompanyRequestCompaniesItem,
    TagMultipleUsersRequest,
    TagMultipleUsersRequestUsersItem,
    UntagCompanyRequest,
    UntagCompanyRequestCompaniesItem,
)

from accoil_sync.connectors.http import Transport
from accoil_sync.errors import DestinationError, DestinationUnavailable, PermanentError

PER_OBJECT_CONCURRENCY = 8


@dataclass(slots=True)
class Retag:
    """One object's tag changes: Intercom id, tag names to add and to remove."""

    object_id: str
    add: set[str] = field(default_factory=set)
    remove: set[str] = field(default_factory=set)


class Tagger:
    def __init__(self, transport: Transport, sdk: Any) -> None:
        self.transport = transport
        self.sdk = sdk
        self._ids: dict[str, str] = {}  # tag name -> Intercom tag id, for this run
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(PER_OBJECT_CONCURRENCY)

    async def tag_id(self, name: str) -> str:
        async with self._lock:
            if name not in self._ids:
                request = CreateOrUpdateTagRequest(name=name)
                tag = await self.transport.call(lambda: self.sdk.tags.create(request=request))
                self._ids[name] = str(tag.id)
            return self._ids[name]

    async def _bulk(
        self,
        groups: Mapping[str, list[str]],
        send: Callable[[str, list[str]], Awaitable[Any]],
        one: Callable[[str, str], Awaitable[Any]],
        owner: Mapping[str, str],
        errors: dict[str, DestinationError],
    ) -> None:
        """One ``send(tag, ids)`` per tag; when it fails, ``one(tag, id)`` per id, errors per object key."""
        for name, ids in sorted(groups.items()):
            ids = [i for i in ids if owner[i] not in errors]
            if not ids:
                continue
            try:
                tag = await send(name, ids)
                if getattr(tag, "id", None) is not None:
                    self._ids.setdefault(name, str(tag.id))
                continue
            except DestinationUnavailable:
                raise
            except DestinationError as exc:
                if len(ids) == 1:
                    errors[owner[ids[0]]] = exc
                    continue

            async def single(object_id: str, name: str = name) -> None:
                async with self._slots:
                    try:
                        await one(name, object_id)
                    except DestinationUnavailable:
                        raise
                    except DestinationError as exc:
                        errors.setdefault(owner[object_id], exc)

            await asyncio.gather(*(single(i) for i in ids))

    async def contacts(self, plans: Mapping[str, Retag]) -> dict[str, DestinationError]:
        """Apply each key's tag changes; returns the error of every key that did not get all of them."""
        errors: dict[str, DestinationError] = {}
        owner = {p.object_id: key for key, p in plans.items()}
        adds: dict[str, list[str]] = {}
        for plan in plans.values():
            for name in plan.add:
                adds.setdefault(name, []).append(plan.object_id)
        tags = self.sdk.tags

        async def send(name: str, ids: list[str]) -> Any:
            users = [TagMultipleUsersRequestUsersItem(id=i) for i in ids]
            request = TagMultipleUsersRequest(name=name, users=users)
            return await self.transport.call(partial(tags.create, request=request))

        async def one(name: str, contact_id: str) -> Any:
            tag_id = await self.tag_id(name)
            return await self.transport.call(partial(tags.tag_contact, contact_id, tag_id=tag_id))

        await self._bulk(adds, send, one, owner, errors)

        async def untag(key: str, plan: Retag) -> None:
            for name in sorted(plan.remove):
                if key in errors:
                    return
                async with self._slots:
                    try:
                        tag_id = await self.tag_id(name)
                        # a plain request, as the connector's updates (connectors/intercom.py says why)
                        await self.transport.request(
                            "DELETE",
                            f"/contacts/{quote(plan.object_id, safe='')}/tags/{quote(tag_id, safe='')}",
                        )
                    except DestinationUnavailable:
                        raise
                    except PermanentError as exc:
                        if exc.status != 404:  # not on the contact any more: what we wanted
                            errors[key] = exc
                    except DestinationError as exc:
                        errors[key] = exc

        await asyncio.gather(*(untag(k, p) for k, p in plans.items() if p.remove))
        return errors

    async def companies(self, plans: Mapping[str, Retag]) -> dict[str, DestinationError]:
        errors: dict[str, DestinationError] = {}
        owner = {p.object_id: key for key, p in plans.items()}
        tags = self.sdk.tags
        for untag in (False, True):
            groups: dict[str, list[str]] = {}
            for plan in plans.values():
                for name in plan.remove if untag else plan.add:
                    groups.setdefault(name, []).append(plan.object_id)

            async def send(name: str, ids: list[str], untag: bool = untag) -> Any:
                request: TagCompanyRequest | UntagCompanyRequest
                if untag:
                    items = [UntagCompanyRequestCompaniesItem(id=i, untag=True) for i in ids]
                    request = UntagCompanyRequest(name=name, companies=items)
                else:
                    request = TagCompanyRequest(
                        name=name, companies=[TagCompanyRequestCompaniesItem(id=i) for i in ids]
                    )
                return await self.transport.call(partial(tags.create, request=request))

            async def one(name: str, company_id: str, untag: bool = untag) -> Any:
                return await send(name, [company_id], untag)

            await self._bulk(groups, send, one, owner, errors)
        return errors
