from etcdcore.proto.etcdserverpb import rpc_pb2 as _rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2 as _kv_pb2
from etcdcore.proto.authpb import auth_pb2 as _auth_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InternalRequest(_message.Message):
    __slots__ = ("id", "put", "delete_range", "txn", "compaction", "lease_grant", "lease_revoke", "alarm", "member_attributes", "member_update", "auth")
    ID_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_RANGE_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    COMPACTION_FIELD_NUMBER: _ClassVar[int]
    LEASE_GRANT_FIELD_NUMBER: _ClassVar[int]
    LEASE_REVOKE_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    MEMBER_UPDATE_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    id: int
    put: _rpc_pb2.PutRequest
    delete_range: _rpc_pb2.DeleteRangeRequest
    txn: _rpc_pb2.TxnRequest
    compaction: _rpc_pb2.CompactionRequest
    lease_grant: _rpc_pb2.LeaseGrantRequest
    lease_revoke: _rpc_pb2.LeaseRevokeRequest
    alarm: _rpc_pb2.AlarmRequest
    member_attributes: MemberAttributes
    member_update: MemberUpdate
    auth: AuthAdminRequest
    def __init__(self, id: _Optional[int] = ..., put: _Optional[_Union[_rpc_pb2.PutRequest, _Mapping]] = ..., delete_range: _Optional[_Union[_rpc_pb2.DeleteRangeRequest, _Mapping]] = ..., txn: _Optional[_Union[_rpc_pb2.TxnRequest, _Mapping]] = ..., compaction: _Optional[_Union[_rpc_pb2.CompactionRequest, _Mapping]] = ..., lease_grant: _Optional[_Union[_rpc_pb2.LeaseGrantRequest, _Mapping]] = ..., lease_revoke: _Optional[_Union[_rpc_pb2.LeaseRevokeRequest, _Mapping]] = ..., alarm: _Optional[_Union[_rpc_pb2.AlarmRequest, _Mapping]] = ..., member_attributes: _Optional[_Union[MemberAttributes, _Mapping]] = ..., member_update: _Optional[_Union[MemberUpdate, _Mapping]] = ..., auth: _Optional[_Union[AuthAdminRequest, _Mapping]] = ...) -> None: ...

class AuthAdminRequest(_message.Message):
    __slots__ = ("enable", "disable", "user_add", "user_delete", "user_change_password", "user_grant_role", "user_revoke_role", "role_add", "role_delete", "role_grant_permission", "role_revoke_permission", "assign_token")
    ENABLE_FIELD_NUMBER: _ClassVar[int]
    DISABLE_FIELD_NUMBER: _ClassVar[int]
    USER_ADD_FIELD_NUMBER: _ClassVar[int]
    USER_DELETE_FIELD_NUMBER: _ClassVar[int]
    USER_CHANGE_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    USER_GRANT_ROLE_FIELD_NUMBER: _ClassVar[int]
    USER_REVOKE_ROLE_FIELD_NUMBER: _ClassVar[int]
    ROLE_ADD_FIELD_NUMBER: _ClassVar[int]
    ROLE_DELETE_FIELD_NUMBER: _ClassVar[int]
    ROLE_GRANT_PERMISSION_FIELD_NUMBER: _ClassVar[int]
    ROLE_REVOKE_PERMISSION_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    enable: _rpc_pb2.AuthEnableRequest
    disable: _rpc_pb2.AuthDisableRequest
    user_add: _rpc_pb2.AuthUserAddRequest
    user_delete: _rpc_pb2.AuthUserDeleteRequest
    user_change_password: _rpc_pb2.AuthUserChangePasswordRequest
    user_grant_role: _rpc_pb2.AuthUserGrantRoleRequest
    user_revoke_role: _rpc_pb2.AuthUserRevokeRoleRequest
    role_add: _rpc_pb2.AuthRoleAddRequest
    role_delete: _rpc_pb2.AuthRoleDeleteRequest
    role_grant_permission: _rpc_pb2.AuthRoleGrantPermissionRequest
    role_revoke_permission: _rpc_pb2.AuthRoleRevokePermissionRequest
    assign_token: AssignToken
    def __init__(self, enable: _Optional[_Union[_rpc_pb2.AuthEnableRequest, _Mapping]] = ..., disable: _Optional[_Union[_rpc_pb2.AuthDisableRequest, _Mapping]] = ..., user_add: _Optional[_Union[_rpc_pb2.AuthUserAddRequest, _Mapping]] = ..., user_delete: _Optional[_Union[_rpc_pb2.AuthUserDeleteRequest, _Mapping]] = ..., user_change_password: _Optional[_Union[_rpc_pb2.AuthUserChangePasswordRequest, _Mapping]] = ..., user_grant_role: _Optional[_Union[_rpc_pb2.AuthUserGrantRoleRequest, _Mapping]] = ..., user_revoke_role: _Optional[_Union[_rpc_pb2.AuthUserRevokeRoleRequest, _Mapping]] = ..., role_add: _Optional[_Union[_rpc_pb2.AuthRoleAddRequest, _Mapping]] = ..., role_delete: _Optional[_Union[_rpc_pb2.AuthRoleDeleteRequest, _Mapping]] = ..., role_grant_permission: _Optional[_Union[_rpc_pb2.AuthRoleGrantPermissionRequest, _Mapping]] = ..., role_revoke_permission: _Optional[_Union[_rpc_pb2.AuthRoleRevokePermissionRequest, _Mapping]] = ..., assign_token: _Optional[_Union[AssignToken, _Mapping]] = ...) -> None: ...

class AssignToken(_message.Message):
    __slots__ = ("user", "token", "ttl_seconds")
    USER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    user: str
    token: str
    ttl_seconds: int
    def __init__(self, user: _Optional[str] = ..., token: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class AuthState(_message.Message):
    __slots__ = ("enabled", "revision", "users", "roles")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    revision: int
    users: _containers.RepeatedCompositeFieldContainer[_auth_pb2.User]
    roles: _containers.RepeatedCompositeFieldContainer[_auth_pb2.Role]
    def __init__(self, enabled: _Optional[bool] = ..., revision: _Optional[int] = ..., users: _Optional[_Iterable[_Union[_auth_pb2.User, _Mapping]]] = ..., roles: _Optional[_Iterable[_Union[_auth_pb2.Role, _Mapping]]] = ...) -> None: ...

class MemberRecord(_message.Message):
    __slots__ = ("id", "name", "peer_urls", "client_urls", "is_learner")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_URLS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_URLS_FIELD_NUMBER: _ClassVar[int]
    IS_LEARNER_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    peer_urls: _containers.RepeatedScalarFieldContainer[str]
    client_urls: _containers.RepeatedScalarFieldContainer[str]
    is_learner: bool
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., peer_urls: _Optional[_Iterable[str]] = ..., client_urls: _Optional[_Iterable[str]] = ..., is_learner: _Optional[bool] = ...) -> None: ...

class ConfChangeContext(_message.Message):
    __slots__ = ("id", "member")
    ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    id: int
    member: MemberRecord
    def __init__(self, id: _Optional[int] = ..., member: _Optional[_Union[MemberRecord, _Mapping]] = ...) -> None: ...

class MemberAttributes(_message.Message):
    __slots__ = ("member_id", "name", "client_urls")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_URLS_FIELD_NUMBER: _ClassVar[int]
    member_id: int
    name: str
    client_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, member_id: _Optional[int] = ..., name: _Optional[str] = ..., client_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class MemberUpdate(_message.Message):
    __slots__ = ("member_id", "peer_urls")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_URLS_FIELD_NUMBER: _ClassVar[int]
    member_id: int
    peer_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, member_id: _Optional[int] = ..., peer_urls: _Optional[_Iterable[str]] = ...) -> None: ...

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
    __slots__ = ("applied_index", "applied_term", "store", "leases", "alarms", "members", "removed", "cluster_id", "auth")
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_TERM_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    applied_index: int
    applied_term: int
    store: bytes
    leases: _containers.RepeatedCompositeFieldContainer[LeaseRecord]
    alarms: _containers.RepeatedCompositeFieldContainer[AlarmRecord]
    members: _containers.RepeatedCompositeFieldContainer[MemberRecord]
    removed: _containers.RepeatedScalarFieldContainer[int]
    cluster_id: int
    auth: AuthState
    def __init__(self, applied_index: _Optional[int] = ..., applied_term: _Optional[int] = ..., store: _Optional[bytes] = ..., leases: _Optional[_Iterable[_Union[LeaseRecord, _Mapping]]] = ..., alarms: _Optional[_Iterable[_Union[AlarmRecord, _Mapping]]] = ..., members: _Optional[_Iterable[_Union[MemberRecord, _Mapping]]] = ..., removed: _Optional[_Iterable[int]] = ..., cluster_id: _Optional[int] = ..., auth: _Optional[_Union[AuthState, _Mapping]] = ...) -> None: ...
