"""user, role and auth commands (etcd's Auth service)."""

from __future__ import annotations

import argparse
import getpass
import sys

from etcdcore.client.requests import prefix_end
from etcdcore.proto.authpb import auth_pb2
from etcdcore.proto.etcdserverpb import rpc_pb2

from ..cli import Commands, Context, bad_args, bool_flag
from ..errors import CtlError
from ..output import write


def _ask_password(name: str, interactive: bool) -> str:
    if not interactive or not sys.stdin.isatty():
        line = sys.stdin.readline().strip()
        return line.split()[0] if line else ""
    first = getpass.getpass(f"Password of {name}: ")
    if not first:
        raise bad_args("empty password")
    second = getpass.getpass(f"Type password of {name} again for confirmation: ")
    if first != second:
        raise bad_args("given passwords are different")
    return first


def _one(a: argparse.Namespace, message: str) -> str:
    if len(a.args) != 1:
        raise bad_args(message)
    return str(a.args[0])


# -- user --------------------------------------------------------------------------


def user_add(ctx: Context, a: argparse.Namespace) -> None:
    arg = _one(a, "user add command requires user name as its argument")
    no_password = a.no_password
    if no_password:
        user, password = arg, ""
    elif a.new_user_password:
        user, password = arg, a.new_user_password
    elif ":" in arg:
        user, password = arg.split(":", 1)
        if not user:
            raise bad_args("empty user name is not allowed")
    else:
        user, password = arg, _ask_password(arg, a.interactive)
    req = rpc_pb2.AuthUserAddRequest(
        name=user, password=password, options=auth_pb2.UserAddOptions(no_password=no_password)
    )
    ctx.printer.user_add(user, ctx.conn.call("Auth", "UserAdd", req))


def user_delete(ctx: Context, a: argparse.Namespace) -> None:
    name = _one(a, "user delete command requires user name as its argument")
    ctx.printer.user_delete(
        name, ctx.conn.call("Auth", "UserDelete", rpc_pb2.AuthUserDeleteRequest(name=name))
    )


def user_get(ctx: Context, a: argparse.Namespace) -> None:
    name = _one(a, "user get command requires user name as its argument")
    resp = ctx.conn.call("Auth", "UserGet", rpc_pb2.AuthUserGetRequest(name=name))
    if not a.detail:
        ctx.printer.user_get(name, resp)
        return
    write(f"User: {name}")
    for role in resp.roles:
        write("")
        ctx.printer.role_get(
            role, ctx.conn.call("Auth", "RoleGet", rpc_pb2.AuthRoleGetRequest(role=role))
        )


def user_list(ctx: Context, a: argparse.Namespace) -> None:
    if a.args:
        raise bad_args("user list command requires no arguments")
    ctx.printer.user_list(ctx.conn.call("Auth", "UserList", rpc_pb2.AuthUserListRequest()))


def user_passwd(ctx: Context, a: argparse.Namespace) -> None:
    name = _one(a, "user passwd command requires user name as its argument")
    password = _ask_password(name, a.interactive)
    req = rpc_pb2.AuthUserChangePasswordRequest(name=name, password=password)
    ctx.printer.user_change_password(ctx.conn.call("Auth", "UserChangePassword", req))


def user_grant_role(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 2:
        raise bad_args("user grant command requires user name and role name as its argument")
    user, role = a.args
    resp = ctx.conn.call(
        "Auth", "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user=user, role=role)
    )
    ctx.printer.user_grant_role(user, role, resp)


def user_revoke_role(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 2:
        raise bad_args("user revoke-role requires user name and role name as its argument")
    user, role = a.args
    resp = ctx.conn.call(
        "Auth", "UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest(name=user, role=role)
    )
    ctx.printer.user_revoke_role(user, role, resp)


# -- role --------------------------------------------------------------------------


def role_add(ctx: Context, a: argparse.Namespace) -> None:
    role = _one(a, "role add command requires role name as its argument")
    ctx.printer.role_add(
        role, ctx.conn.call("Auth", "RoleAdd", rpc_pb2.AuthRoleAddRequest(name=role))
    )


def role_delete(ctx: Context, a: argparse.Namespace) -> None:
    role = _one(a, "role delete command requires role name as its argument")
    ctx.printer.role_delete(
        role, ctx.conn.call("Auth", "RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role=role))
    )


def role_get(ctx: Context, a: argparse.Namespace) -> None:
    role = _one(a, "role get command requires role name as its argument")
    ctx.printer.role_get(
        role, ctx.conn.call("Auth", "RoleGet", rpc_pb2.AuthRoleGetRequest(role=role))
    )


def role_list(ctx: Context, a: argparse.Namespace) -> None:
    if a.args:
        raise bad_args("role list command requires no arguments")
    ctx.printer.role_list(ctx.conn.call("Auth", "RoleList", rpc_pb2.AuthRoleListRequest()))


def _perm_range(a: argparse.Namespace, keys: list[str]) -> tuple[str, str]:
    key = keys[0]
    if len(keys) == 1:
        if a.prefix:
            if a.from_key:
                raise bad_args("--from-key and --prefix flags are mutually exclusive")
            return key, prefix_end(key.encode()).decode("latin-1")
        return key, "\x00" if a.from_key else ""
    if a.prefix:
        raise bad_args("unexpected endkey argument with --prefix flag")
    if a.from_key:
        raise bad_args("unexpected endkey argument with --from-key flag")
    return key, keys[1]


_PERM_TYPES = {"READ": auth_pb2.Permission.READ, "WRITE": auth_pb2.Permission.WRITE}
_PERM_TYPES["READWRITE"] = auth_pb2.Permission.READWRITE


def role_grant_permission(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) < 3:
        raise bad_args(
            "role grant command requires role name, permission type, "
            "and key [endkey] as its argument"
        )
    role, kind = a.args[0], a.args[1]
    if kind.upper() not in _PERM_TYPES:
        raise bad_args(f"invalid permission type: {kind}")
    key, end = _perm_range(a, a.args[2:])
    perm = auth_pb2.Permission(
        permType=_PERM_TYPES[kind.upper()], key=key.encode(), range_end=end.encode("latin-1")
    )
    resp = ctx.conn.call(
        "Auth", "RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionRequest(name=role, perm=perm)
    )
    ctx.printer.role_grant_permission(role, resp)


def role_revoke_permission(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) < 2:
        raise bad_args(
            "role revoke-permission command requires role name and key [endkey] as its argument"
        )
    role = a.args[0]
    key, end = _perm_range(a, a.args[1:])
    req = rpc_pb2.AuthRoleRevokePermissionRequest(
        role=role, key=key.encode(), range_end=end.encode("latin-1")
    )
    resp = ctx.conn.call("Auth", "RoleRevokePermission", req)
    ctx.printer.role_revoke_permission(role, key, end, resp)


# -- auth --------------------------------------------------------------------------


def auth_enable(ctx: Context, a: argparse.Namespace) -> None:
    if a.args:
        raise bad_args("auth enable command does not accept any arguments")
    while True:
        try:
            ctx.conn.call("Auth", "AuthEnable", rpc_pb2.AuthEnableRequest())
            break
        except CtlError as e:
            # As etcdctl: a root user without the root role gets it, and
            # enabling is tried again.
            if e.message != "etcdserver: root user does not have root role":
                raise
        ctx.conn.call("Auth", "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="root"))
        ctx.conn.call(
            "Auth", "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root")
        )
    write("Authentication Enabled")


def auth_disable(ctx: Context, a: argparse.Namespace) -> None:
    if a.args:
        raise bad_args("auth disable command does not accept any arguments")
    ctx.conn.call("Auth", "AuthDisable", rpc_pb2.AuthDisableRequest())
    write("Authentication Disabled")


def auth_status(ctx: Context, a: argparse.Namespace) -> None:
    if a.args:
        raise bad_args("auth status command does not accept any arguments")
    ctx.printer.auth_status(ctx.conn.call("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest()))


def register(commands: Commands) -> None:
    g = commands.group("user", "User related commands")
    p = g.add("add", "Adds a new user", user_add)
    p.add_argument(
        "--interactive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Read password from stdin instead of interactive terminal",
    )
    p.add_argument(
        "--new-user-password", default="", help="Supply password from the command line flag"
    )
    bool_flag(p, "no-password", "Create a user without password (CN based auth only)")
    p.add_argument("args", nargs="*", metavar="<user name or user:password>")
    g.add("delete", "Deletes a user", user_delete).add_argument(
        "args", nargs="*", metavar="<user name>"
    )
    p = g.add("get", "Gets detailed information of a user", user_get)
    bool_flag(p, "detail", "Show permissions of roles granted to the user")
    p.add_argument("args", nargs="*", metavar="<user name>")
    g.add("list", "Lists all users", user_list).add_argument(
        "args", nargs="*", help=argparse.SUPPRESS
    )
    p = g.add("passwd", "Changes password of user", user_passwd)
    p.add_argument(
        "--interactive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="If true, read password from stdin instead of interactive terminal",
    )
    p.add_argument("args", nargs="*", metavar="<user name>")
    g.add("grant-role", "Grants a role to a user", user_grant_role).add_argument("args", nargs="*")
    g.add("revoke-role", "Revokes a role from a user", user_revoke_role).add_argument(
        "args", nargs="*"
    )

    g = commands.group("role", "Role related commands")
    g.add("add", "Adds a new role", role_add).add_argument("args", nargs="*", metavar="<role name>")
    g.add("delete", "Deletes a role", role_delete).add_argument(
        "args", nargs="*", metavar="<role name>"
    )
    g.add("get", "Gets detailed information of a role", role_get).add_argument("args", nargs="*")
    g.add("list", "Lists all roles", role_list).add_argument(
        "args", nargs="*", help=argparse.SUPPRESS
    )
    for name, help, fn in (
        ("grant-permission", "Grants a key to a role", role_grant_permission),
        ("revoke-permission", "Revokes a key from a role", role_revoke_permission),
    ):
        p = g.add(name, help, fn)
        bool_flag(p, "prefix", f"{name.split('-')[0]} a prefix permission")
        bool_flag(
            p,
            "from-key",
            f"{name.split('-')[0]} a permission of keys that are greater than or equal "
            "to the given key",
        )
        p.add_argument("args", nargs="*")

    g = commands.group("auth", "Enable or disable authentication")
    g.add("enable", "Enables authentication", auth_enable).add_argument(
        "args", nargs="*", help=argparse.SUPPRESS
    )
    g.add("disable", "Disables authentication", auth_disable).add_argument(
        "args", nargs="*", help=argparse.SUPPRESS
    )
    g.add("status", "Returns authentication status", auth_status).add_argument(
        "args", nargs="*", help=argparse.SUPPRESS
    )
