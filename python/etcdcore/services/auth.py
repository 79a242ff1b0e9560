"""The Auth service (etcd's v3 auth RPCs) behind the bridge.

Who may call what is checked in Rust before a call gets here (the root role
for administration, a user's own name or roles for UserGet / RoleGet).
This service validates, hashes passwords with bcrypt (in this member, as
etcd does, so only hashes enter the Raft log), proposes the change, and
answers the queries from the replicated auth store the core holds.

Authenticate checks the password here. With simple tokens (random, renewed
by use, forgotten after --auth-token-ttl) it then proposes the new token, so
every member learns it and the client may use it on any member. With
``--auth-token jwt,...`` the core signs a JWT naming the user and the auth
store revision; every member verifies it with its own key, so nothing is
proposed.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections.abc import Awaitable, Callable
from typing import Protocol

import bcrypt

from etcdcore._core import Core, JwtTokens
from etcdcore.bridge import FAILED_PRECONDITION, INVALID_ARGUMENT, Bridge, EtcdError
from etcdcore.proto.authpb import auth_pb2
from etcdcore.proto.etcdcore import internal_pb2
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.services.header import fill_header


class _Response(Protocol):
    """An Auth response: a message with a header."""

    @property
    def header(self) -> rpc_pb2.ResponseHeader: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...  # noqa: N802


SERVICE = "/etcdserverpb.Auth/"

ERR_AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled"
ERR_AUTH_FAILED = "etcdserver: authentication failed, invalid user ID or password"
ERR_USER_NOT_FOUND = "etcdserver: user name not found"
ERR_ROLE_NOT_FOUND = "etcdserver: role name not found"

_TOKEN_LETTERS = string.ascii_letters


class AuthService:
    """Serves etcdserverpb.Auth over the bridge."""

    def __init__(
        self,
        core: Core,
        *,
        token_ttl: int = 300,
        bcrypt_cost: int = 10,
        jwt: JwtTokens | None = None,
    ) -> None:
        self.core = core
        self.token_ttl = token_ttl
        #: The --auth-token jwt key; None for simple tokens.
        self.jwt = jwt
        self.bcrypt_cost = bcrypt_cost

    def register(self, bridge: Bridge) -> None:
        handlers: dict[str, Callable[[bytes], Awaitable[bytes]]] = {
            "AuthEnable": self.auth_enable,
            "AuthDisable": self.auth_disable,
            "AuthStatus": self.auth_status,
            "Authenticate": self.authenticate,
            "UserAdd": self.user_add,
            "UserGet": self.user_get,
            "UserList": self.user_list,
            "UserDelete": self.user_delete,
            "UserChangePassword": self.user_change_password,
            "UserGrantRole": self.user_grant_role,
            "UserRevokeRole": self.user_revoke_role,
            "RoleAdd": self.role_add,
            "RoleGet": self.role_get,
            "RoleList": self.role_list,
            "RoleDelete": self.role_delete,
            "RoleGrantPermission": self.role_grant_permission,
            "RoleRevokePermission": self.role_revoke_permission,
        }
        for name, handler in handlers.items():
            bridge.unary(SERVICE + name, handler)

    # -- plumbing ---------------------------------------------------------------------

    async def _propose(self, **change: object) -> None:
        request = internal_pb2.AuthAdminRequest(**change)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.auth_propose, request.SerializeToString())

    def _answer(self, resp: _Response) -> bytes:
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def _hash(self, password: str) -> str:
        salt = bcrypt.gensalt(self.bcrypt_cost)
        loop = asyncio.get_running_loop()
        hashed = await loop.run_in_executor(None, bcrypt.hashpw, password.encode(), salt)
        return hashed.decode()

    # -- enabling and authenticating --------------------------------------------------

    async def auth_enable(self, data: bytes) -> bytes:
        rpc_pb2.AuthEnableRequest.FromString(data)
        await self._propose(enable=rpc_pb2.AuthEnableRequest())
        return self._answer(rpc_pb2.AuthEnableResponse())

    async def auth_disable(self, data: bytes) -> bytes:
        rpc_pb2.AuthDisableRequest.FromString(data)
        await self._propose(disable=rpc_pb2.AuthDisableRequest())
        return self._answer(rpc_pb2.AuthDisableResponse())

    async def auth_status(self, data: bytes) -> bytes:
        rpc_pb2.AuthStatusRequest.FromString(data)
        enabled, revision = self.core.auth_status()
        return self._answer(rpc_pb2.AuthStatusResponse(enabled=enabled, authRevision=revision))

    async def authenticate(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthenticateRequest.FromString(data)
        enabled, _ = self.core.auth_status()
        if not enabled:
            raise EtcdError(FAILED_PRECONDITION, ERR_AUTH_NOT_ENABLED)
        creds = self.core.auth_credentials(req.name)
        if creds is None or creds[1]:
            raise EtcdError(INVALID_ARGUMENT, ERR_AUTH_FAILED)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, _password_matches, req.password, creds[0])
        if not ok:
            raise EtcdError(INVALID_ARGUMENT, ERR_AUTH_FAILED)
        if self.jwt is not None:
            # The revision the token is valid from: older tokens are refused
            # with "revision of auth store is old" once auth changes.
            _, revision = self.core.auth_status()
            token = self.jwt.sign(req.name, revision)
            return self._answer(rpc_pb2.AuthenticateResponse(token=token))
        # etcd's simple token: 16 random letters, a dot, a sequence number.
        token = "".join(secrets.choice(_TOKEN_LETTERS) for _ in range(16))
        token += f".{secrets.randbelow(10**9)}"
        await self._propose(
            assign_token=internal_pb2.AssignToken(
                user=req.name, token=token, ttl_seconds=self.token_ttl
            )
        )
        return self._answer(rpc_pb2.AuthenticateResponse(token=token))

    # -- users ------------------------------------------------------------------------

    async def user_add(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthUserAddRequest.FromString(data)
        change = rpc_pb2.AuthUserAddRequest(name=req.name, options=req.options)
        if not req.options.no_password:
            change.hashedPassword = req.hashedPassword or await self._hash(req.password)
        await self._propose(user_add=change)
        return self._answer(rpc_pb2.AuthUserAddResponse())

    async def user_get(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthUserGetRequest.FromString(data)
        roles = self.core.auth_user_roles(req.name)
        if roles is None:
            raise EtcdError(FAILED_PRECONDITION, ERR_USER_NOT_FOUND)
        return self._answer(rpc_pb2.AuthUserGetResponse(roles=roles))

    async def user_list(self, data: bytes) -> bytes:
        rpc_pb2.AuthUserListRequest.FromString(data)
        return self._answer(rpc_pb2.AuthUserListResponse(users=self.core.auth_users()))

    async def user_delete(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthUserDeleteRequest.FromString(data)
        await self._propose(user_delete=req)
        return self._answer(rpc_pb2.AuthUserDeleteResponse())

    async def user_change_password(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthUserChangePasswordRequest.FromString(data)
        hashed = req.hashedPassword or await self._hash(req.password)
        change = rpc_pb2.AuthUserChangePasswordRequest(name=req.name, hashedPassword=hashed)
        await self._propose(user_change_password=change)
        return self._answer(rpc_pb2.AuthUserChangePasswordResponse())

    async def user_grant_role(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthUserGrantRoleRequest.FromString(data)
        await self._propose(user_grant_role=req)
        return self._answer(rpc_pb2.AuthUserGrantRoleResponse())

    async def user_revoke_role(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthUserRevokeRoleRequest.FromString(data)
        await self._propose(user_revoke_role=req)
        return self._answer(rpc_pb2.AuthUserRevokeRoleResponse())

    # -- roles ------------------------------------------------------------------------

    async def role_add(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthRoleAddRequest.FromString(data)
        await self._propose(role_add=req)
        return self._answer(rpc_pb2.AuthRoleAddResponse())

    async def role_get(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthRoleGetRequest.FromString(data)
        perms = self.core.auth_role_permissions(req.role)
        if perms is None:
            raise EtcdError(FAILED_PRECONDITION, ERR_ROLE_NOT_FOUND)
        resp = rpc_pb2.AuthRoleGetResponse(
            perm=[
                auth_pb2.Permission(
                    permType=auth_pb2.Permission.Type.ValueType(t), key=k, range_end=e
                )
                for t, k, e in perms
            ]
        )
        return self._answer(resp)

    async def role_list(self, data: bytes) -> bytes:
        rpc_pb2.AuthRoleListRequest.FromString(data)
        return self._answer(rpc_pb2.AuthRoleListResponse(roles=self.core.auth_roles()))

    async def role_delete(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthRoleDeleteRequest.FromString(data)
        await self._propose(role_delete=req)
        return self._answer(rpc_pb2.AuthRoleDeleteResponse())

    async def role_grant_permission(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthRoleGrantPermissionRequest.FromString(data)
        await self._propose(role_grant_permission=req)
        return self._answer(rpc_pb2.AuthRoleGrantPermissionResponse())

    async def role_revoke_permission(self, data: bytes) -> bytes:
        req = rpc_pb2.AuthRoleRevokePermissionRequest.FromString(data)
        await self._propose(role_revoke_permission=req)
        return self._answer(rpc_pb2.AuthRoleRevokePermissionResponse())


def _password_matches(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:  # not a bcrypt hash (a no-password user's empty one)
        return False
