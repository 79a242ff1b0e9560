from etcdcore.proto.etcdserverpb import rpc_pb2 as _rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2 as _kv_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InternalRequest(_message.Message):
    __slots__ = ("id", "put", "delete_range", "txn", "compaction", "lease_grant", "lease_revoke", "alarm")
    ID_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_RANGE_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    COMPACTION_FIELD_NUMBER: _ClassVar[int]
    LEASE_GRANT_FIELD_NUMBER: _ClassVar[int]
    LEASE_REVOKE_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    id: int
    put: _rpc_pb2.PutRequest
    delete_range: _rpc_pb2.DeleteRangeRequest
    txn: _rpc_pb2.TxnRequest
    compaction: _rpc_pb2.CompactionRequest
    lease_grant: _rpc_pb2.LeaseGrantRequest
    lease_revoke: _rpc_pb2.LeaseRevokeRequest
    alarm: _rpc_pb2.AlarmRequest
    def __init__(self, id: _Optional[int] = ..., put: _Optional[_Union[_rpc_pb2.PutRequest, _Mapping]] = ..., delete_range: _Optional[_Union[_rpc_pb2.DeleteRangeRequest, _Mapping]] = ..., txn: _Optional[_Union[_rpc_pb2.TxnRequest, _Mapping]] = ..., compaction: _Optional[_Union[_rpc_pb2.CompactionRequest, _Mapping]] = ..., lease_grant: _Optional[_Union[_rpc_pb2.LeaseGrantRequest, _Mapping]] = ..., lease_revoke: _Optional[_Union[_rpc_pb2.LeaseRevokeRequest, _Mapping]] = ..., alarm: _Optional[_Union[_rpc_pb2.AlarmRequest, _Mapping]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("revision", "events")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    events: _containers.RepeatedCompositeFieldContainer[_kv_pb2.Event]
    def __init__(self, revision: _Optional[int] = ..., events: _Optional[_Iterable[_Union[_kv_pb2.Event, _Mapping]]] = ...) -> None: ...

class WalMetadata(_message.Message):
    __slots__ = ("member_id", "cluster_id", "name")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    member_id: int
    cluster_id: int
    name: str
    def __init__(self, member_id: _Optional[int] = ..., cluster_id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class LeaseRecord(_message.Message):
    __slots__ = ("id", "ttl")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl: int
    def __init__(self, id: _Optional[int] = ..., ttl: _Optional[int] = ...) -> None: ...

class AlarmRecord(_message.Message):
    __slots__ = ("member_id", "alarm")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    member_id: int
    alarm: int
    def __init__(self, member_id: _Optional[int] = ..., alarm: _Optional[int] = ...) -> None: ...

class StateSnapshot(_message.Message):
    __slots__ = ("applied_index", "applied_term", "store", "leases", "alarms")
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_TERM_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    applied_index: int
    applied_term: int
    store: bytes
    leases: _containers.RepeatedCompositeFieldContainer[LeaseRecord]
    alarms: _containers.RepeatedCompositeFieldContainer[AlarmRecord]
    def __init__(self, applied_index: _Optional[int] = ..., applied_term: _Optional[int] = ..., store: _Optional[bytes] = ..., leases: _Optional[_Iterable[_Union[LeaseRecord, _Mapping]]] = ..., alarms: _Optional[_Iterable[_Union[AlarmRecord, _Mapping]]] = ...) -> None: ...
