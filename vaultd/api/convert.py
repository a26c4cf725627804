"""Conversions between protobuf messages and core's domain records."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from vaultd.core import objectviews
from vaultd.core.errors import InvalidArgument
from vaultd.core.records import ObjectEntry
from vaultd.v1 import object_service_pb2 as pb

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(moment: datetime) -> Timestamp:
    """What Timestamp.FromDatetime makes (a naive time taken as UTC), by timedelta arithmetic
    instead of its trip through a time tuple: every object answer carries two."""
    since = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def optional_timestamp(request: Message, field: str) -> datetime | None:
    """A request's Timestamp field, None when unset; one outside 0001..9999 or with nanos out of
    range is INVALID_ARGUMENT naming the field, not the ValueError protobuf raises."""
    if not request.HasField(field):
        return None
    try:
        moment: datetime = getattr(request, field).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "is not a valid timestamp (years 1 to 9999)") from None
    return moment


def metadata(meta: objectviews.ObjectMetadata) -> pb.ObjectMetadata:
    return pb.ObjectMetadata(
        id=meta.id,
        name=meta.name,
        environment_id=meta.environment_id,
        key_context=meta.key_context,
        key_ids=meta.key_ids,
        version_id=meta.version_id,
        created_at=timestamp(meta.created_at),
        updated_at=timestamp(meta.updated_at),
        updated_by=pb.Actor(id=meta.updated_by.id, name=meta.updated_by.name),
        version_number=meta.version_number,
    )


def vault_object(obj: objectviews.VaultObject) -> pb.Object:
    return pb.Object(
        id=obj.metadata.id,
        name=obj.metadata.name,
        value=obj.value,
        metadata=metadata(obj.metadata),
    )


def digest(entry: ObjectEntry) -> pb.ObjectDigest:
    return pb.ObjectDigest(id=entry.id, name=entry.name, updated_at=timestamp(entry.updated_at))


def version(v: objectviews.ObjectVersion) -> pb.ObjectVersion:
    return pb.ObjectVersion(
        id=v.info.version_id,
        created_at=timestamp(v.info.created_at),
        current_version=v.current,
        size=v.info.size,
        etag=v.info.etag,
        version_number=v.number,
    )


def list_query(request: pb.ListObjectsRequest) -> objectviews.ListQuery:
    return objectviews.ListQuery(
        limit=request.limit,
        before=request.before,
        after=request.after,
        ascending=request.order == pb.LIST_ORDER_ASCENDING,
        name_prefix=request.name_prefix,
        updated_after=optional_timestamp(request, "updated_after"),
        key_context=dict(request.key_context),
    )
