"""The key lifecycle RPCs of AdminService, proto <-> domain; AdminServicer mixes them in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import grpc

from vaultd.api import convert, paging
from vaultd.api.caller import caller_of
from vaultd.api.callrecord import touched
from vaultd.core.audit import Subject
from vaultd.core.errors import InvalidArgument
from vaultd.core.lifecycle import KekSelector, KeyLifecycle, item_named, parse_item
from vaultd.core.records import KekRecord, RewrapJob, RewrapState
from vaultd.core.rules import KeyRules
from vaultd.v1 import admin_service_pb2 as pb
from vaultd.v1 import object_service_pb2 as object_pb

Context: TypeAlias = grpc.aio.ServicerContext

_STATES = {
    RewrapState.RUNNING: pb.REWRAP_STATE_RUNNING,
    RewrapState.DONE: pb.REWRAP_STATE_DONE,
    RewrapState.FAILED: pb.REWRAP_STATE_FAILED,
}


def kek_metadata(record: KekRecord, rules: KeyRules) -> pb.KekMetadata:
    key_uris = rules.key_uris(record.item_key, record.item_value)
    meta = pb.KekMetadata(
        id=record.kek_id,
        item=f"{record.item_key}={record.item_value}",
        item_key=record.item_key,
        item_value=record.item_value,
        versions=[
            pb.KekVersion(
                version=v.version,
                key_uri=v.provider_uri,
                created_at=convert.timestamp(v.created_at),
                secondary_key_uris=[w.provider_uri for w in v.secondary],
            )
            for v in record.versions
        ],
        min_decryption_version=record.min_decryption_version,
        key_uri=key_uris[0],
        secondary_key_uris=key_uris[1:],
    )
    if record.shredded_at is not None:
        meta.shredded_at.CopyFrom(convert.timestamp(record.shredded_at))
    return meta


def rewrap_job(job: RewrapJob) -> pb.RewrapJob:
    return pb.RewrapJob(
        id=job.id,
        state=_STATES[job.state],
        kek_ids=job.kek_ids,
        objects_total=job.objects_total,
        objects_done=job.objects_done,
        versions_rewrapped=job.versions_rewrapped,
        keks_rewrapped=job.keks_rewrapped,
        error=job.error,
        created_at=convert.timestamp(job.created_at),
        updated_at=convert.timestamp(job.updated_at),
    )


def _touched_keks(records: Sequence[KekRecord]) -> None:
    """The KEKs a call changed; for one KEK, its item as a one-item context."""
    one = records[0] if len(records) == 1 else None
    context = {one.item_key: one.item_value} if one is not None else None
    touched(Subject(key_ids=tuple(r.kek_id for r in records), key_context=context))


def _selector(message: pb.KekSelector) -> KekSelector:
    return KekSelector.parse(message.items, message.key_uri_prefix, message.all)


class LifecycleRpcs:
    """ListKeks, RotateKeks, StartRewrap, GetRewrapJob, ListRewrapJobs, RetireKekVersions and
    ShredKek, each acting in the caller's environment."""

    def __init__(self, lifecycle: KeyLifecycle, rules: KeyRules) -> None:
        self._lifecycle = lifecycle
        self._rules = rules

    async def ListKeks(self, request: pb.ListKeksRequest, context: Context) -> pb.ListKeksResponse:
        records = await self._lifecycle.list_keks(caller_of(context).environment_id)
        shown, after = paging.page(
            records, lambda r: (r.item_key, r.item_value, r.kek_id), request.limit, request.after
        )
        return pb.ListKeksResponse(
            keks=[kek_metadata(r, self._rules) for r in shown],
            list_metadata=object_pb.ListMetadata(after=after),
        )

    async def RotateKeks(
        self, request: pb.RotateKeksRequest, context: Context
    ) -> pb.RotateKeksResponse:
        records = await self._lifecycle.rotate(
            caller_of(context).environment_id, _selector(request.selector)
        )
        _touched_keks(records)
        return pb.RotateKeksResponse(keks=[kek_metadata(r, self._rules) for r in records])

    async def StartRewrap(
        self, request: pb.StartRewrapRequest, context: Context
    ) -> pb.StartRewrapResponse:
        job = await self._lifecycle.start_rewrap(
            caller_of(context).environment_id, _selector(request.selector)
        )
        touched(Subject(key_ids=tuple(job.kek_ids)))
        return pb.StartRewrapResponse(job=rewrap_job(job))

    async def GetRewrapJob(
        self, request: pb.GetRewrapJobRequest, context: Context
    ) -> pb.GetRewrapJobResponse:
        job = await self._lifecycle.job(caller_of(context).environment_id, request.id)
        return pb.GetRewrapJobResponse(job=rewrap_job(job))

    async def ListRewrapJobs(
        self, request: pb.ListRewrapJobsRequest, context: Context
    ) -> pb.ListRewrapJobsResponse:
        jobs = await self._lifecycle.jobs(caller_of(context).environment_id)
        shown, after = paging.page(
            jobs, lambda j: (j.created_at.isoformat(), j.id), request.limit, request.after
        )
        return pb.ListRewrapJobsResponse(
            jobs=[rewrap_job(j) for j in shown], list_metadata=object_pb.ListMetadata(after=after)
        )

    async def RetireKekVersions(
        self, request: pb.RetireKekVersionsRequest, context: Context
    ) -> pb.RetireKekVersionsResponse:
        record = await self._lifecycle.retire(
            caller_of(context).environment_id,
            parse_item(request.item),
            request.min_decryption_version,
        )
        _touched_keks([record])
        return pb.RetireKekVersionsResponse(kek=kek_metadata(record, self._rules))

    async def ShredKek(self, request: pb.ShredKekRequest, context: Context) -> pb.ShredKekResponse:
        if request.item_key or request.item_value:
            if request.item:
                raise InvalidArgument("item", "name the item as item or as item_key and item_value")
            items = item_named(request.item_key, request.item_value)
        else:
            items = (parse_item(request.item),)
        if not request.confirm:
            raise InvalidArgument("confirm", "must be true: a shred destroys keys for good")
        record = await self._lifecycle.shred(caller_of(context).environment_id, *items)
        _touched_keks([record])
        return pb.ShredKekResponse(kek=kek_metadata(record, self._rules))
