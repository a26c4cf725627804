import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from vaultd.v1 import object_service_pb2 as _object_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewrapState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWRAP_STATE_UNSPECIFIED: _ClassVar[RewrapState]
    REWRAP_STATE_RUNNING: _ClassVar[RewrapState]
    REWRAP_STATE_DONE: _ClassVar[RewrapState]
    REWRAP_STATE_FAILED: _ClassVar[RewrapState]
REWRAP_STATE_UNSPECIFIED: RewrapState
REWRAP_STATE_RUNNING: RewrapState
REWRAP_STATE_DONE: RewrapState
REWRAP_STATE_FAILED: RewrapState

class ApiKeyMetadata(_message.Message):
    __slots__ = ("id", "name", "environment_id", "permissions", "created_at", "revoked_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    environment_id: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., environment_id: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("name", "environment_id", "permissions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    environment_id: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., environment_id: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("api_key", "metadata")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    metadata: ApiKeyMetadata
    def __init__(self, api_key: _Optional[str] = ..., metadata: _Optional[_Union[ApiKeyMetadata, _Mapping]] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("limit", "after")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("api_keys", "list_metadata")
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    LIST_METADATA_FIELD_NUMBER: _ClassVar[int]
    api_keys: _containers.RepeatedCompositeFieldContainer[ApiKeyMetadata]
    list_metadata: _object_service_pb2.ListMetadata
    def __init__(self, api_keys: _Optional[_Iterable[_Union[ApiKeyMetadata, _Mapping]]] = ..., list_metadata: _Optional[_Union[_object_service_pb2.ListMetadata, _Mapping]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeApiKeyResponse(_message.Message):
    __slots__ = ("metadata",)
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: ApiKeyMetadata
    def __init__(self, metadata: _Optional[_Union[ApiKeyMetadata, _Mapping]] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("id", "type", "time", "environment_id", "actor", "outcome", "request_id", "method", "peer", "object_id", "object_name", "key_ids", "key_context", "data_key_id", "api_key_id")
    class KeyContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    KEY_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    time: _timestamp_pb2.Timestamp
    environment_id: str
    actor: _object_service_pb2.Actor
    outcome: str
    request_id: str
    method: str
    peer: str
    object_id: str
    object_name: str
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    key_context: _containers.ScalarMap[str, str]
    data_key_id: str
    api_key_id: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., environment_id: _Optional[str] = ..., actor: _Optional[_Union[_object_service_pb2.Actor, _Mapping]] = ..., outcome: _Optional[str] = ..., request_id: _Optional[str] = ..., method: _Optional[str] = ..., peer: _Optional[str] = ..., object_id: _Optional[str] = ..., object_name: _Optional[str] = ..., key_ids: _Optional[_Iterable[str]] = ..., key_context: _Optional[_Mapping[str, str]] = ..., data_key_id: _Optional[str] = ..., api_key_id: _Optional[str] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("since", "type", "limit", "after")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    type: str
    limit: int
    after: str
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[str] = ..., limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "cursor")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    cursor: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., cursor: _Optional[str] = ...) -> None: ...

class KekSelector(_message.Message):
    __slots__ = ("items", "key_uri_prefix", "all")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    KEY_URI_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[str]
    key_uri_prefix: str
    all: bool
    def __init__(self, items: _Optional[_Iterable[str]] = ..., key_uri_prefix: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class KekVersion(_message.Message):
    __slots__ = ("version", "key_uri", "created_at", "secondary_key_uris")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_URI_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_KEY_URIS_FIELD_NUMBER: _ClassVar[int]
    version: int
    key_uri: str
    created_at: _timestamp_pb2.Timestamp
    secondary_key_uris: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., key_uri: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., secondary_key_uris: _Optional[_Iterable[str]] = ...) -> None: ...

class KekMetadata(_message.Message):
    __slots__ = ("id", "item", "versions", "min_decryption_version", "shredded_at", "key_uri", "item_key", "item_value", "secondary_key_uris")
    ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_DECRYPTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHREDDED_AT_FIELD_NUMBER: _ClassVar[int]
    KEY_URI_FIELD_NUMBER: _ClassVar[int]
    ITEM_KEY_FIELD_NUMBER: _ClassVar[int]
    ITEM_VALUE_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_KEY_URIS_FIELD_NUMBER: _ClassVar[int]
    id: str
    item: str
    versions: _containers.RepeatedCompositeFieldContainer[KekVersion]
    min_decryption_version: int
    shredded_at: _timestamp_pb2.Timestamp
    key_uri: str
    item_key: str
    item_value: str
    secondary_key_uris: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., item: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[KekVersion, _Mapping]]] = ..., min_decryption_version: _Optional[int] = ..., shredded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_uri: _Optional[str] = ..., item_key: _Optional[str] = ..., item_value: _Optional[str] = ..., secondary_key_uris: _Optional[_Iterable[str]] = ...) -> None: ...

class RewrapJob(_message.Message):
    __slots__ = ("id", "state", "kek_ids", "objects_total", "objects_done", "versions_rewrapped", "keks_rewrapped", "error", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KEK_IDS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_DONE_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_REWRAPPED_FIELD_NUMBER: _ClassVar[int]
    KEKS_REWRAPPED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: RewrapState
    kek_ids: _containers.RepeatedScalarFieldContainer[str]
    objects_total: int
    objects_done: int
    versions_rewrapped: int
    keks_rewrapped: int
    error: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[RewrapState, str]] = ..., kek_ids: _Optional[_Iterable[str]] = ..., objects_total: _Optional[int] = ..., objects_done: _Optional[int] = ..., versions_rewrapped: _Optional[int] = ..., keks_rewrapped: _Optional[int] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListKeksRequest(_message.Message):
    __slots__ = ("limit", "after")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class ListKeksResponse(_message.Message):
    __slots__ = ("keks", "list_metadata")
    KEKS_FIELD_NUMBER: _ClassVar[int]
    LIST_METADATA_FIELD_NUMBER: _ClassVar[int]
    keks: _containers.RepeatedCompositeFieldContainer[KekMetadata]
    list_metadata: _object_service_pb2.ListMetadata
    def __init__(self, keks: _Optional[_Iterable[_Union[KekMetadata, _Mapping]]] = ..., list_metadata: _Optional[_Union[_object_service_pb2.ListMetadata, _Mapping]] = ...) -> None: ...

class RotateKeksRequest(_message.Message):
    __slots__ = ("selector",)
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    selector: KekSelector
    def __init__(self, selector: _Optional[_Union[KekSelector, _Mapping]] = ...) -> None: ...

class RotateKeksResponse(_message.Message):
    __slots__ = ("keks",)
    KEKS_FIELD_NUMBER: _ClassVar[int]
    keks: _containers.RepeatedCompositeFieldContainer[KekMetadata]
    def __init__(self, keks: _Optional[_Iterable[_Union[KekMetadata, _Mapping]]] = ...) -> None: ...

class StartRewrapRequest(_message.Message):
    __slots__ = ("selector",)
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    selector: KekSelector
    def __init__(self, selector: _Optional[_Union[KekSelector, _Mapping]] = ...) -> None: ...

class StartRewrapResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: RewrapJob
    def __init__(self, job: _Optional[_Union[RewrapJob, _Mapping]] = ...) -> None: ...

class GetRewrapJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetRewrapJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: RewrapJob
    def __init__(self, job: _Optional[_Union[RewrapJob, _Mapping]] = ...) -> None: ...

class ListRewrapJobsRequest(_message.Message):
    __slots__ = ("limit", "after")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class ListRewrapJobsResponse(_message.Message):
    __slots__ = ("jobs", "list_metadata")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    LIST_METADATA_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[RewrapJob]
    list_metadata: _object_service_pb2.ListMetadata
    def __init__(self, jobs: _Optional[_Iterable[_Union[RewrapJob, _Mapping]]] = ..., list_metadata: _Optional[_Union[_object_service_pb2.ListMetadata, _Mapping]] = ...) -> None: ...

class RetireKekVersionsRequest(_message.Message):
    __slots__ = ("item", "min_decryption_version")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    MIN_DECRYPTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    item: str
    min_decryption_version: int
    def __init__(self, item: _Optional[str] = ..., min_decryption_version: _Optional[int] = ...) -> None: ...

class RetireKekVersionsResponse(_message.Message):
    __slots__ = ("kek",)
    KEK_FIELD_NUMBER: _ClassVar[int]
    kek: KekMetadata
    def __init__(self, kek: _Optional[_Union[KekMetadata, _Mapping]] = ...) -> None: ...

class ShredKekRequest(_message.Message):
    __slots__ = ("item", "confirm", "item_key", "item_value")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    ITEM_KEY_FIELD_NUMBER: _ClassVar[int]
    ITEM_VALUE_FIELD_NUMBER: _ClassVar[int]
    item: str
    confirm: bool
    item_key: str
    item_value: str
    def __init__(self, item: _Optional[str] = ..., confirm: _Optional[bool] = ..., item_key: _Optional[str] = ..., item_value: _Optional[str] = ...) -> None: ...

class ShredKekResponse(_message.Message):
    __slots__ = ("kek",)
    KEK_FIELD_NUMBER: _ClassVar[int]
    kek: KekMetadata
    def __init__(self, kek: _Optional[_Union[KekMetadata, _Mapping]] = ...) -> None: ...

class ByokKey(_message.Message):
    __slots__ = ("id", "item_key", "pattern", "key_uri", "created_at", "verified_at", "verified", "verification_error")
    ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_KEY_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    KEY_URI_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    item_key: str
    pattern: str
    key_uri: str
    created_at: _timestamp_pb2.Timestamp
    verified_at: _timestamp_pb2.Timestamp
    verified: bool
    verification_error: str
    def __init__(self, id: _Optional[str] = ..., item_key: _Optional[str] = ..., pattern: _Optional[str] = ..., key_uri: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., verified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., verified: _Optional[bool] = ..., verification_error: _Optional[str] = ...) -> None: ...

class CreateByokKeyRequest(_message.Message):
    __slots__ = ("match", "key_uri")
    class MatchEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MATCH_FIELD_NUMBER: _ClassVar[int]
    KEY_URI_FIELD_NUMBER: _ClassVar[int]
    match: _containers.ScalarMap[str, str]
    key_uri: str
    def __init__(self, match: _Optional[_Mapping[str, str]] = ..., key_uri: _Optional[str] = ...) -> None: ...

class CreateByokKeyResponse(_message.Message):
    __slots__ = ("byok_key",)
    BYOK_KEY_FIELD_NUMBER: _ClassVar[int]
    byok_key: ByokKey
    def __init__(self, byok_key: _Optional[_Union[ByokKey, _Mapping]] = ...) -> None: ...

class ListByokKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListByokKeysResponse(_message.Message):
    __slots__ = ("byok_keys",)
    BYOK_KEYS_FIELD_NUMBER: _ClassVar[int]
    byok_keys: _containers.RepeatedCompositeFieldContainer[ByokKey]
    def __init__(self, byok_keys: _Optional[_Iterable[_Union[ByokKey, _Mapping]]] = ...) -> None: ...

class GetByokKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetByokKeyResponse(_message.Message):
    __slots__ = ("byok_key",)
    BYOK_KEY_FIELD_NUMBER: _ClassVar[int]
    byok_key: ByokKey
    def __init__(self, byok_key: _Optional[_Union[ByokKey, _Mapping]] = ...) -> None: ...

class VerifyByokKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class VerifyByokKeyResponse(_message.Message):
    __slots__ = ("byok_key",)
    BYOK_KEY_FIELD_NUMBER: _ClassVar[int]
    byok_key: ByokKey
    def __init__(self, byok_key: _Optional[_Union[ByokKey, _Mapping]] = ...) -> None: ...

class DeleteByokKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteByokKeyResponse(_message.Message):
    __slots__ = ("byok_key",)
    BYOK_KEY_FIELD_NUMBER: _ClassVar[int]
    byok_key: ByokKey
    def __init__(self, byok_key: _Optional[_Union[ByokKey, _Mapping]] = ...) -> None: ...
