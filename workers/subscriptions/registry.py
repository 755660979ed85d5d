"""The subscription registry in Redis: what we created, for which mailbox folder, and how it is doing.

The receiver reads ``clientState`` and ``tenantId`` from the same hash to
verify notifications (:mod:`receiver.intake`); everything else is for the
renewer and for ``graphhook subscriptions list``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator

import redis

from graphhook.core import keys

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def parse_time(value: str) -> dt.datetime:
    """Graph's timestamps (``Z`` or offset, up to 7 fractional digits) as aware UTC datetimes."""
    import re

    text = re.sub(r"(\.\d{1,6})\d*", r"\1", value.strip()).replace("Z", "+00:00")
    moment = dt.datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime(TIME_FORMAT)


@dataclass(frozen=True)
class Record:
    """One subscription we own."""

    id: str
    mailbox: str
    user_id: str
    folder: str
    resource: str
    expiration: str
    client_state: str = field(repr=False)
    tenant_id: str = ""
    created_at: str = ""
    renewed_at: str = ""
    state: str = "active"  # active | renew_failed | removed
    last_error: str = ""
    rich: bool = False  # includeResourceData: encrypted content, 1,440-minute lifetime
    tenant: str = "default"  # the tenant's name in the configuration (workers/triggers/tenants.py)
    app_id: str = ""  # the app (client id) that created it: the audience of its validation tokens

    @property
    def key(self) -> tuple[str, str]:
        """The desired-state key: mailbox and folder, case-insensitive."""
        return self.mailbox.lower(), self.folder.lower()

    def expires(self) -> dt.datetime:
        return parse_time(self.expiration)

    def to_redis(self) -> dict[str, str]:
        data = asdict(self)
        data["clientState"] = data.pop("client_state")
        data["tenantId"] = data.pop("tenant_id")
        data["userId"] = data.pop("user_id")
        data["createdAt"] = data.pop("created_at")
        data["renewedAt"] = data.pop("renewed_at")
        data["lastError"] = data.pop("last_error")
        data["rich"] = "1" if data.pop("rich") else ""
        data["appId"] = data.pop("app_id")
        return data

    @classmethod
    def from_redis(cls, values: dict[bytes, bytes]) -> "Record | None":
        d = {k.decode(): v.decode() for k, v in values.items()}
        if not d.get("id") or not d.get("clientState"):
            return None
        return cls(
            id=d["id"], mailbox=d.get("mailbox", ""), user_id=d.get("userId", ""), folder=d.get("folder", ""),
            resource=d.get("resource", ""), expiration=d.get("expiration", ""), client_state=d["clientState"],
            tenant_id=d.get("tenantId", ""), created_at=d.get("createdAt", ""), renewed_at=d.get("renewedAt", ""),
            state=d.get("state", "active"), last_error=d.get("lastError", ""), rich=d.get("rich") == "1",
            tenant=d.get("tenant") or "default", app_id=d.get("appId", ""),
        )

    def public(self) -> dict[str, str]:
        """What ``subscriptions list`` shows: everything but the clientState."""
        data = self.to_redis()
        data.pop("clientState")
        return data

    def updated(self, **changes: object) -> "Record":
        return replace(self, **changes)


def save(r: redis.Redis, record: Record) -> None:
    pipe = r.pipeline()
    pipe.hset(keys.subscription(record.id), mapping=record.to_redis())
    pipe.sadd(keys.SUBSCRIPTIONS, record.id)
    pipe.execute()


def update(r: redis.Redis, subscription_id: str, **fields: str) -> None:
    """Change some fields of an existing record (no-op for an unknown id)."""
    mapping = {_REDIS_NAMES.get(k, k): v for k, v in fields.items()}
    if r.exists(keys.subscription(subscription_id)):
        r.hset(keys.subscription(subscription_id), mapping=mapping)


_REDIS_NAMES = {"renewed_at": "renewedAt", "last_error": "lastError", "created_at": "createdAt"}


def load(r: redis.Redis, subscription_id: str) -> Record | None:
    return Record.from_redis(r.hgetall(keys.subscription(subscription_id)))


def remove(r: redis.Redis, subscription_id: str) -> None:
    pipe = r.pipeline()
    pipe.delete(keys.subscription(subscription_id))
    pipe.srem(keys.SUBSCRIPTIONS, subscription_id)
    pipe.execute()


def all_records(r: redis.Redis, chunk: int = 500) -> Iterator[Record]:
    """Every registered subscription (pipelined in chunks; ids without a hash are dropped)."""
    ids = sorted(i.decode() for i in r.smembers(keys.SUBSCRIPTIONS))
    for start in range(0, len(ids), chunk):
        pipe = r.pipeline(transaction=False)
        part = ids[start:start + chunk]
        for sid in part:
            pipe.hgetall(keys.subscription(sid))
        for sid, values in zip(part, pipe.execute()):
            record = Record.from_redis(values)
            if record is None:
                r.srem(keys.SUBSCRIPTIONS, sid)
                continue
            yield record
