from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CreateDataKeyRequest(_message.Message):
    __slots__ = ("key_context",)
    class KeyContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    key_context: _containers.ScalarMap[str, str]
    def __init__(self, key_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateDataKeyResponse(_message.Message):
    __slots__ = ("id", "data_key", "encrypted_keys", "key_context", "key_ids")
    class KeyContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    data_key: bytes
    encrypted_keys: bytes
    key_context: _containers.ScalarMap[str, str]
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., data_key: _Optional[bytes] = ..., encrypted_keys: _Optional[bytes] = ..., key_context: _Optional[_Mapping[str, str]] = ..., key_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DecryptDataKeyRequest(_message.Message):
    __slots__ = ("encrypted_keys",)
    ENCRYPTED_KEYS_FIELD_NUMBER: _ClassVar[int]
    encrypted_keys: bytes
    def __init__(self, encrypted_keys: _Optional[bytes] = ...) -> None: ...

class DecryptDataKeyResponse(_message.Message):
    __slots__ = ("id", "data_key")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    data_key: bytes
    def __init__(self, id: _Optional[str] = ..., data_key: _Optional[bytes] = ...) -> None: ...

class RekeyDataKeyRequest(_message.Message):
    __slots__ = ("encrypted_keys", "key_context")
    class KeyContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENCRYPTED_KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    encrypted_keys: bytes
    key_context: _containers.ScalarMap[str, str]
    def __init__(self, encrypted_keys: _Optional[bytes] = ..., key_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RekeyDataKeyResponse(_message.Message):
    __slots__ = ("id", "data_key", "encrypted_keys", "key_context", "key_ids")
    class KeyContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    data_key: bytes
    encrypted_keys: bytes
    key_context: _containers.ScalarMap[str, str]
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., data_key: _Optional[bytes] = ..., encrypted_keys: _Optional[bytes] = ..., key_context: _Optional[_Mapping[str, str]] = ..., key_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EncryptRequest(_message.Message):
    __slots__ = ("plaintext", "key_context", "associated_data", "workos_compatible")
    class KeyContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    WORKOS_COMPATIBLE_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    key_context: _containers.ScalarMap[str, str]
    associated_data: bytes
    workos_compatible: bool
    def __init__(self, plaintext: _Optional[bytes] = ..., key_context: _Optional[_Mapping[str, str]] = ..., associated_data: _Optional[bytes] = ..., workos_compatible: _Optional[bool] = ...) -> None: ...

class EncryptResponse(_message.Message):
    __slots__ = ("ciphertext",)
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    def __init__(self, ciphertext: _Optional[bytes] = ...) -> None: ...

class DecryptRequest(_message.Message):
    __slots__ = ("ciphertext", "associated_data")
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    associated_data: bytes
    def __init__(self, ciphertext: _Optional[bytes] = ..., associated_data: _Optional[bytes] = ...) -> None: ...

class DecryptResponse(_message.Message):
    __slots__ = ("plaintext",)
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ...) -> None: ...
