"""etcdctl's output formats: simple, json, fields, table and protobuf, each
writing the same bytes etcdctl writes for the same answer.

The json format is Go's encoding/json applied to etcd's generated structs:
field names as in the .proto, zero values left out, 64-bit integers as
numbers, bytes as base64, enums as numbers, a oneof as ``{"Name": {...}}``.
Where etcdctl prints a client-library struct rather than a protobuf message
(watch and lease answers) the field names are Go's.
"""

from __future__ import annotations

import base64
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from tabulate import tabulate

from etcdcore.client.requests import prefix_end
from etcdcore.proto.authpb import auth_pb2
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2

from .errors import EXIT_BAD_FEATURE, CtlError

# -- endpoint rows -----------------------------------------------------------------


@dataclass
class EpHealth:
    endpoint: str
    health: bool
    took: str
    error: str = ""


@dataclass
class EpStatus:
    endpoint: str
    resp: rpc_pb2.StatusResponse


@dataclass
class EpHashKV:
    endpoint: str
    resp: rpc_pb2.HashKVResponse


@dataclass
class SnapshotStatus:
    hash: int
    revision: int
    total_keys: int
    total_size: int


# -- low-level writing -------------------------------------------------------------


def write(data: bytes | str, end: bytes = b"\n") -> None:
    """stdout, byte-exact: keys and values are written as stored."""
    if isinstance(data, str):
        data = data.encode()
    sys.stdout.buffer.write(data + end)


def flush() -> None:
    sys.stdout.buffer.flush()


def go_quote(data: bytes | str) -> str:
    """Go's %q of a string: printable characters as they are, the rest escaped."""
    raw = data if isinstance(data, bytes) else data.encode()
    out = ['"']
    text = raw.decode("utf-8", errors="surrogateescape")
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif not ch.isprintable() and o > 0x7F:
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def humanize_bytes(n: int) -> str:
    """go-humanize's Bytes: SI units (``25 kB``, ``2.5 MB``)."""
    if n < 10:
        return f"{n} B"
    sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    e = math.floor(math.log(n) / math.log(1000))
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.1f} {sizes[e]}" if val < 10 else f"{val:.0f} {sizes[e]}"


def hex_bytes(b: bytes) -> str:
    """--hex: every byte as ``\\xNN``."""
    return "".join(f"\\x{c:02x}" for c in b)


# -- Go's encoding/json of etcd's protobuf structs ---------------------------------


def go_value(msg: Message) -> dict[str, Any]:
    """A message as encoding/json renders the gogo-generated struct."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        v = _go_field(fd, value)
        oneof = fd.containing_oneof
        if oneof is not None:
            out["".join(p.capitalize() for p in oneof.name.split("_"))] = {fd.name: v}
        else:
            out[fd.name] = v
    return out


def _go_field(fd: FieldDescriptor, value: Any) -> Any:
    if fd.is_repeated:
        return [_go_scalar(fd, v) for v in value]
    return _go_scalar(fd, value)


def _go_scalar(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return go_value(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def go_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _header_fields(header: rpc_pb2.ResponseHeader) -> dict[str, Any]:
    """An embedded *pb.ResponseHeader: its fields promoted into the outer struct."""
    return go_value(header)


# -- printers ----------------------------------------------------------------------


class Printer:
    """The answers etcdctl knows how to print; a format that cannot print one
    ends the command with etcdctl's "<format> not supported as output format"."""

    name = ""

    def __init__(self, is_hex: bool = False) -> None:
        self.is_hex = is_hex
        self.value_only = False

    def unsupported(self, *_: Any) -> None:
        raise CtlError(EXIT_BAD_FEATURE, f"{self.name} not supported as output format")

    def rpc(self, msg: Message) -> None:
        """Print a raw RPC answer (json and protobuf formats)."""
        self.unsupported()

    # KV
    def get(self, r: rpc_pb2.RangeResponse) -> None:
        self.rpc(r)

    def put(self, r: rpc_pb2.PutResponse) -> None:
        self.rpc(r)

    def delete(self, r: rpc_pb2.DeleteRangeResponse) -> None:
        self.rpc(r)

    def txn(self, r: rpc_pb2.TxnResponse) -> None:
        self.rpc(r)

    def txn_op(self, op: rpc_pb2.ResponseOp) -> None:
        """One answer inside a txn, printed as that request's answer alone."""
        kind = op.WhichOneof("response")
        if kind == "response_range":
            self.get(op.response_range)
        elif kind == "response_put":
            self.put(op.response_put)
        elif kind == "response_delete_range":
            self.delete(op.response_delete_range)

    def watch(self, r: rpc_pb2.WatchResponse) -> None:
        self.rpc(r)

    # leases
    def grant(self, r: rpc_pb2.LeaseGrantResponse) -> None:
        self.unsupported()

    def revoke(self, lease_id: int, r: rpc_pb2.LeaseRevokeResponse) -> None:
        self.unsupported()

    def keep_alive(self, r: rpc_pb2.LeaseKeepAliveResponse) -> None:
        self.unsupported()

    def time_to_live(self, r: rpc_pb2.LeaseTimeToLiveResponse, keys: bool) -> None:
        self.unsupported()

    def leases(self, r: rpc_pb2.LeaseLeasesResponse) -> None:
        self.unsupported()

    # cluster
    def member_add(self, r: rpc_pb2.MemberAddResponse) -> None:
        self.rpc(r)

    def member_remove(self, member_id: int, r: rpc_pb2.MemberRemoveResponse) -> None:
        self.rpc(r)

    def member_update(self, member_id: int, r: rpc_pb2.MemberUpdateResponse) -> None:
        self.rpc(r)

    def member_promote(self, member_id: int, r: rpc_pb2.MemberPromoteResponse) -> None:
        self.rpc(r)

    def member_list(self, r: rpc_pb2.MemberListResponse) -> None:
        self.rpc(r)

    def endpoint_health(self, rows: Sequence[EpHealth]) -> None:
        self.unsupported()

    def endpoint_status(self, rows: Sequence[EpStatus]) -> None:
        self.unsupported()

    def endpoint_hashkv(self, rows: Sequence[EpHashKV]) -> None:
        self.unsupported()

    def move_leader(self, leader: int, target: int, r: rpc_pb2.MoveLeaderResponse) -> None:
        self.unsupported()

    def alarm(self, r: rpc_pb2.AlarmResponse) -> None:
        self.rpc(r)

    def snapshot_status(self, st: SnapshotStatus) -> None:
        self.unsupported()

    # auth
    def role_add(self, role: str, r: Message) -> None:
        self.rpc(r)

    def role_get(self, role: str, r: rpc_pb2.AuthRoleGetResponse) -> None:
        self.rpc(r)

    def role_delete(self, role: str, r: Message) -> None:
        self.rpc(r)

    def role_list(self, r: rpc_pb2.AuthRoleListResponse) -> None:
        self.rpc(r)

    def role_grant_permission(self, role: str, r: Message) -> None:
        self.rpc(r)

    def role_revoke_permission(self, role: str, key: str, end: str, r: Message) -> None:
        self.rpc(r)

    def user_add(self, user: str, r: Message) -> None:
        self.rpc(r)

    def user_get(self, user: str, r: rpc_pb2.AuthUserGetResponse) -> None:
        self.rpc(r)

    def user_list(self, r: rpc_pb2.AuthUserListResponse) -> None:
        self.rpc(r)

    def user_change_password(self, r: Message) -> None:
        self.rpc(r)

    def user_grant_role(self, user: str, role: str, r: Message) -> None:
        self.rpc(r)

    def user_revoke_role(self, user: str, role: str, r: Message) -> None:
        self.rpc(r)

    def user_delete(self, user: str, r: Message) -> None:
        self.rpc(r)

    def auth_status(self, r: rpc_pb2.AuthStatusResponse) -> None:
        self.rpc(r)


def member_list_rows(r: rpc_pb2.MemberListResponse) -> tuple[list[str], list[list[str]]]:
    hdr = ["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"]
    rows = [
        [
            f"{m.ID:x}",
            "started" if m.name else "unstarted",
            m.name,
            ",".join(m.peerURLs),
            ",".join(m.clientURLs),
            "true" if m.isLearner else "false",
        ]
        for m in r.members
    ]
    return hdr, rows


def endpoint_health_rows(rows: Sequence[EpHealth]) -> tuple[list[str], list[list[str]]]:
    hdr = ["endpoint", "health", "took", "error"]
    return hdr, [[h.endpoint, str(h.health).lower(), h.took, h.error] for h in rows]


def endpoint_status_rows(rows: Sequence[EpStatus]) -> tuple[list[str], list[list[str]]]:
    hdr = ["endpoint", "ID", "version", "db size", "is leader", "is learner", "raft term"]
    hdr += ["raft index", "raft applied index", "errors"]
    out = []
    for s in rows:
        r = s.resp
        out.append(
            [
                s.endpoint,
                f"{r.header.member_id:x}",
                r.version,
                humanize_bytes(r.dbSize),
                str(r.leader == r.header.member_id).lower(),
                str(r.isLearner).lower(),
                str(r.raftTerm),
                str(r.raftIndex),
                str(r.raftAppliedIndex),
                ", ".join(r.errors),
            ]
        )
    return hdr, out


def snapshot_status_rows(st: SnapshotStatus) -> tuple[list[str], list[list[str]]]:
    hdr = ["hash", "revision", "total keys", "total size"]
    return hdr, [
        [f"{st.hash:x}", str(st.revision), str(st.total_keys), humanize_bytes(st.total_size)]
    ]


def endpoint_hashkv_rows(rows: Sequence[EpHashKV]) -> tuple[list[str], list[list[str]]]:
    return ["endpoint", "hash"], [[h.endpoint, str(h.resp.hash)] for h in rows]


class SimplePrinter(Printer):
    name = "simple"

    def kv(self, kv: kv_pb2.KeyValue) -> None:
        key, value = (hex_bytes(kv.key), hex_bytes(kv.value)) if self.is_hex else (kv.key, kv.value)
        if not self.value_only:
            write(key)
        write(value)

    def get(self, r: rpc_pb2.RangeResponse) -> None:
        for kv in r.kvs:
            self.kv(kv)

    def put(self, r: rpc_pb2.PutResponse) -> None:
        write("OK")
        if r.HasField("prev_kv"):
            self.kv(r.prev_kv)

    def delete(self, r: rpc_pb2.DeleteRangeResponse) -> None:
        write(str(r.deleted))
        for kv in r.prev_kvs:
            self.kv(kv)

    def txn(self, r: rpc_pb2.TxnResponse) -> None:
        write("SUCCESS" if r.succeeded else "FAILURE")
        for op in r.responses:
            write("")
            self.txn_op(op)

    def watch(self, r: rpc_pb2.WatchResponse) -> None:
        for ev in r.events:
            write(kv_pb2.Event.EventType.Name(ev.type))
            if ev.HasField("prev_kv"):
                self.kv(ev.prev_kv)
            self.kv(ev.kv)

    def grant(self, r: rpc_pb2.LeaseGrantResponse) -> None:
        write(f"lease {r.ID:016x} granted with TTL({r.TTL}s)")

    def revoke(self, lease_id: int, r: rpc_pb2.LeaseRevokeResponse) -> None:
        write(f"lease {lease_id:016x} revoked")

    def keep_alive(self, r: rpc_pb2.LeaseKeepAliveResponse) -> None:
        write(f"lease {r.ID:016x} keepalived with TTL({r.TTL})")

    def time_to_live(self, r: rpc_pb2.LeaseTimeToLiveResponse, keys: bool) -> None:
        if r.grantedTTL == 0 and r.TTL == -1:
            write(f"lease {r.ID:016x} already expired")
            return
        text = f"lease {r.ID:016x} granted with TTL({r.grantedTTL}s), remaining({r.TTL}s)"
        if keys:
            text += (
                ", attached keys([" + " ".join(k.decode(errors="replace") for k in r.keys) + "])"
            )
        write(text)

    def leases(self, r: rpc_pb2.LeaseLeasesResponse) -> None:
        write(f"found {len(r.leases)} leases")
        for lease in r.leases:
            write(f"{lease.ID:016x}")

    def alarm(self, r: rpc_pb2.AlarmResponse) -> None:
        for a in r.alarms:
            write(f"memberID:{a.memberID} alarm:{rpc_pb2.AlarmType.Name(a.alarm)} ")

    def member_add(self, r: rpc_pb2.MemberAddResponse) -> None:
        write(f"Member {r.member.ID:16x} added to cluster {r.header.cluster_id:16x}")

    def member_remove(self, member_id: int, r: rpc_pb2.MemberRemoveResponse) -> None:
        write(f"Member {member_id:16x} removed from cluster {r.header.cluster_id:16x}")

    def member_update(self, member_id: int, r: rpc_pb2.MemberUpdateResponse) -> None:
        write(f"Member {member_id:16x} updated in cluster {r.header.cluster_id:16x}")

    def member_promote(self, member_id: int, r: rpc_pb2.MemberPromoteResponse) -> None:
        write(f"Member {member_id:16x} promoted in cluster {r.header.cluster_id:16x}")

    def member_list(self, r: rpc_pb2.MemberListResponse) -> None:
        for row in member_list_rows(r)[1]:
            write(", ".join(row))

    def endpoint_health(self, rows: Sequence[EpHealth]) -> None:
        for h in rows:
            if not h.error:
                write(f"{h.endpoint} is healthy: successfully committed proposal: took = {h.took}")
            else:
                sys.stderr.write(
                    f"{h.endpoint} is unhealthy: failed to commit proposal: {h.error}\n"
                )

    def endpoint_status(self, rows: Sequence[EpStatus]) -> None:
        for row in endpoint_status_rows(rows)[1]:
            write(", ".join(row))

    def endpoint_hashkv(self, rows: Sequence[EpHashKV]) -> None:
        for row in endpoint_hashkv_rows(rows)[1]:
            write(", ".join(row))

    def move_leader(self, leader: int, target: int, r: rpc_pb2.MoveLeaderResponse) -> None:
        write(f"Leadership transferred from {leader:x} to {target:x}")

    def snapshot_status(self, st: SnapshotStatus) -> None:
        write(", ".join(snapshot_status_rows(st)[1][0]))

    def role_add(self, role: str, r: Message) -> None:
        write(f"Role {role} created")

    def role_get(self, role: str, r: rpc_pb2.AuthRoleGetResponse) -> None:
        write(f"Role {role}")
        for title, kinds in (
            ("KV Read:", (auth_pb2.Permission.READ, auth_pb2.Permission.READWRITE)),
            ("KV Write:", (auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE)),
        ):
            write(title)
            for perm in r.perm:
                if perm.permType in kinds:
                    write(_permission_text(perm))

    def role_list(self, r: rpc_pb2.AuthRoleListResponse) -> None:
        for role in r.roles:
            write(role)

    def role_delete(self, role: str, r: Message) -> None:
        write(f"Role {role} deleted")

    def role_grant_permission(self, role: str, r: Message) -> None:
        write(f"Role {role} updated")

    def role_revoke_permission(self, role: str, key: str, end: str, r: Message) -> None:
        if not end:
            write(f"Permission of key {key} is revoked from role {role}")
        elif end != "\x00":
            write(f"Permission of range [{key}, {end}) is revoked from role {role}")
        else:
            write(f"Permission of range [{key}, <open ended> is revoked from role {role}")

    def user_add(self, user: str, r: Message) -> None:
        write(f"User {user} created")

    def user_get(self, user: str, r: rpc_pb2.AuthUserGetResponse) -> None:
        write(f"User: {user}")
        write("Roles:" + "".join(f" {role}" for role in r.roles))

    def user_change_password(self, r: Message) -> None:
        write("Password updated")

    def user_grant_role(self, user: str, role: str, r: Message) -> None:
        write(f"Role {role} is granted to user {user}")

    def user_revoke_role(self, user: str, role: str, r: Message) -> None:
        write(f"Role {role} is revoked from user {user}")

    def user_delete(self, user: str, r: Message) -> None:
        write(f"User {user} deleted")

    def user_list(self, r: rpc_pb2.AuthUserListResponse) -> None:
        for user in r.users:
            write(user)

    def auth_status(self, r: rpc_pb2.AuthStatusResponse) -> None:
        write(f"Authentication Status: {str(r.enabled).lower()}")
        write(f"AuthRevision: {r.authRevision}")


def _permission_text(perm: auth_pb2.Permission) -> bytes:
    if not perm.range_end:
        return b"\t" + perm.key
    if perm.range_end != b"\x00":
        text = b"\t[" + perm.key + b", " + perm.range_end + b")"
    else:
        text = b"\t[" + perm.key + b", <open ended>"
    if prefix_end(perm.key) == perm.range_end:
        text += b" (prefix " + perm.key + b")"
    return text


class JsonPrinter(Printer):
    name = "json"

    def rpc(self, msg: Message) -> None:
        write(go_json(go_value(msg)))

    def watch(self, r: rpc_pb2.WatchResponse) -> None:
        # clientv3.WatchResponse: Go field names, no omitempty on its own fields.
        write(
            go_json(
                {
                    "Header": go_value(r.header),
                    "Events": [go_value(e) for e in r.events] or None,
                    "CompactRevision": r.compact_revision,
                    "Canceled": r.canceled,
                    "Created": r.created,
                }
            )
        )

    def grant(self, r: rpc_pb2.LeaseGrantResponse) -> None:
        write(go_json({**_header_fields(r.header), "ID": r.ID, "TTL": r.TTL, "Error": r.error}))

    def revoke(self, lease_id: int, r: rpc_pb2.LeaseRevokeResponse) -> None:
        write(go_json(go_value(r)))

    def keep_alive(self, r: rpc_pb2.LeaseKeepAliveResponse) -> None:
        write(go_json({**_header_fields(r.header), "ID": r.ID, "TTL": r.TTL}))

    def time_to_live(self, r: rpc_pb2.LeaseTimeToLiveResponse, keys: bool) -> None:
        body = {**_header_fields(r.header), "id": r.ID, "ttl": r.TTL, "granted-ttl": r.grantedTTL}
        body["keys"] = [base64.b64encode(k).decode() for k in r.keys] or None
        write(go_json(body))

    def leases(self, r: rpc_pb2.LeaseLeasesResponse) -> None:
        body = {
            **_header_fields(r.header),
            "leases": [{"id": lease.ID} for lease in r.leases] or None,
        }
        write(go_json(body))

    def member_list(self, r: rpc_pb2.MemberListResponse) -> None:
        if not self.is_hex:
            self.rpc(r)
            return
        h = r.header
        text = f'{{"header":{{"cluster_id":"{h.cluster_id:x}","member_id":"{h.member_id:x}"'
        text += f',"raft_term":{h.raft_term}}}'
        for i, m in enumerate(r.members):
            text += ',"members":[' if i == 0 else ","
            text += (
                f'{{"ID":"{m.ID:x}","name":{go_json(m.name)},"peerURLs":{go_json(list(m.peerURLs))}'
            )
            text += f',"clientURLS":{go_json(list(m.clientURLs))}}}'
            if i == len(r.members) - 1:
                text += "]"
        write(text + "}")

    def endpoint_health(self, rows: Sequence[EpHealth]) -> None:
        out = []
        for h in rows:
            item: dict[str, Any] = {"endpoint": h.endpoint, "health": h.health, "took": h.took}
            if h.error:
                item["error"] = h.error
            out.append(item)
        write(go_json(out))

    def endpoint_status(self, rows: Sequence[EpStatus]) -> None:
        write(go_json([{"Endpoint": s.endpoint, "Status": go_value(s.resp)} for s in rows]))

    def endpoint_hashkv(self, rows: Sequence[EpHashKV]) -> None:
        write(go_json([{"Endpoint": h.endpoint, "HashKV": go_value(h.resp)} for h in rows]))

    def move_leader(self, leader: int, target: int, r: rpc_pb2.MoveLeaderResponse) -> None:
        self.rpc(r)

    def snapshot_status(self, st: SnapshotStatus) -> None:
        body = {"hash": st.hash, "revision": st.revision, "totalKey": st.total_keys}
        write(go_json({**body, "totalSize": st.total_size}))


class ProtobufPrinter(Printer):
    name = "protobuf"

    def rpc(self, msg: Message) -> None:
        sys.stdout.buffer.write(msg.SerializeToString())

    def move_leader(self, leader: int, target: int, r: rpc_pb2.MoveLeaderResponse) -> None:
        self.unsupported()


class FieldsPrinter(Printer):
    name = "fields"

    def _kv(self, prefix: str, kv: kv_pb2.KeyValue) -> None:
        write(f'"{prefix}Key" : {go_quote(kv.key)}')
        write(f'"{prefix}CreateRevision" : {kv.create_revision}')
        write(f'"{prefix}ModRevision" : {kv.mod_revision}')
        write(f'"{prefix}Version" : {kv.version}')
        write(f'"{prefix}Value" : {go_quote(kv.value)}')
        write(f'"{prefix}Lease" : {kv.lease}')

    def _hdr(self, h: rpc_pb2.ResponseHeader) -> None:
        write(f'"ClusterID" : {h.cluster_id}')
        write(f'"MemberID" : {h.member_id}')
        write(f'"Revision" : {h.revision}')
        write(f'"RaftTerm" : {h.raft_term}')

    def rpc(self, msg: Message) -> None:
        # Auth answers: fields prints only their header.
        self._hdr(msg.header)  # type: ignore[attr-defined]

    def delete(self, r: rpc_pb2.DeleteRangeResponse) -> None:
        self._hdr(r.header)
        write(f'"Deleted" : {r.deleted}')
        for kv in r.prev_kvs:
            self._kv("Prev", kv)

    def get(self, r: rpc_pb2.RangeResponse) -> None:
        self._hdr(r.header)
        for kv in r.kvs:
            self._kv("", kv)
        write(f'"More" : {str(r.more).lower()}')
        write(f'"Count" : {r.count}')

    def put(self, r: rpc_pb2.PutResponse) -> None:
        self._hdr(r.header)
        if r.HasField("prev_kv"):
            self._kv("Prev", r.prev_kv)

    def txn(self, r: rpc_pb2.TxnResponse) -> None:
        self._hdr(r.header)
        write(f'"Succeeded" : {str(r.succeeded).lower()}')
        for op in r.responses:
            self.txn_op(op)

    def watch(self, r: rpc_pb2.WatchResponse) -> None:
        self._hdr(r.header)
        for ev in r.events:
            write(f'"Type" : {kv_pb2.Event.EventType.Name(ev.type)}')
            if ev.HasField("prev_kv"):
                self._kv("Prev", ev.prev_kv)
            self._kv("", ev.kv)

    def grant(self, r: rpc_pb2.LeaseGrantResponse) -> None:
        self._hdr(r.header)
        write(f'"ID" : {r.ID}')
        write(f'"TTL" : {r.TTL}')

    def revoke(self, lease_id: int, r: rpc_pb2.LeaseRevokeResponse) -> None:
        self._hdr(r.header)

    def keep_alive(self, r: rpc_pb2.LeaseKeepAliveResponse) -> None:
        self.grant(r)  # type: ignore[arg-type]  # the same three fields

    def time_to_live(self, r: rpc_pb2.LeaseTimeToLiveResponse, keys: bool) -> None:
        self._hdr(r.header)
        write(f'"ID" : {r.ID}')
        write(f'"TTL" : {r.TTL}')
        write(f'"GrantedTTL" : {r.grantedTTL}')
        for k in r.keys:
            write(f'"Key" : {go_quote(k)}')

    def leases(self, r: rpc_pb2.LeaseLeasesResponse) -> None:
        self._hdr(r.header)
        for lease in r.leases:
            write(f'"ID" : {lease.ID}')

    def member_list(self, r: rpc_pb2.MemberListResponse) -> None:
        self._hdr(r.header)
        for m in r.members:
            write(f'"ID" : {m.ID}')
            write(f'"Name" : {go_quote(m.name)}')
            for u in m.peerURLs:
                write(f'"PeerURL" : {go_quote(u)}')
            for u in m.clientURLs:
                write(f'"ClientURL" : {go_quote(u)}')
            write(f'"IsLearner" : {str(m.isLearner).lower()}')
            write("")

    def endpoint_health(self, rows: Sequence[EpHealth]) -> None:
        for h in rows:
            write(f'"Endpoint" : {go_quote(h.endpoint)}')
            write(f'"Health" : {str(h.health).lower()}')
            write(f'"Took" : {h.took}')
            write(f'"Error" : {h.error}')
            write("")

    def endpoint_status(self, rows: Sequence[EpStatus]) -> None:
        for s in rows:
            r = s.resp
            self._hdr(r.header)
            write(f'"Version" : {go_quote(r.version)}')
            write(f'"DBSize" : {r.dbSize}')
            write(f'"Leader" : {r.leader}')
            write(f'"IsLearner" : {str(r.isLearner).lower()}')
            write(f'"RaftIndex" : {r.raftIndex}')
            write(f'"RaftTerm" : {r.raftTerm}')
            write(f'"RaftAppliedIndex" : {r.raftAppliedIndex}')
            write(f'"Errors" : [{" ".join(r.errors)}]')
            write(f'"Endpoint" : {go_quote(s.endpoint)}')
            write("")

    def endpoint_hashkv(self, rows: Sequence[EpHashKV]) -> None:
        for h in rows:
            self._hdr(h.resp.header)
            write(f'"Endpoint" : {go_quote(h.endpoint)}')
            write(f'"Hash" : {h.resp.hash}')
            write("")

    def alarm(self, r: rpc_pb2.AlarmResponse) -> None:
        self._hdr(r.header)
        for a in r.alarms:
            write(f'"MemberID" : {a.memberID}')
            write(f'"AlarmType" : {rpc_pb2.AlarmType.Name(a.alarm)}')
            write("")

    def snapshot_status(self, st: SnapshotStatus) -> None:
        write(f'"Hash" : {st.hash}')
        write(f'"Revision" : {st.revision}')
        write(f'"Keys" : {st.total_keys}')
        write(f'"Size" : {st.total_size}')

    def role_get(self, role: str, r: rpc_pb2.AuthRoleGetResponse) -> None:
        self._hdr(r.header)
        for p in r.perm:
            write(f'"PermType" :  {auth_pb2.Permission.Type.Name(p.permType)}')
            write(f'"Key" : {go_quote(p.key)}')
            write(f'"RangeEnd" : {go_quote(p.range_end)}')

    def role_list(self, r: rpc_pb2.AuthRoleListResponse) -> None:
        self._hdr(r.header)
        write('"Roles" :' + "".join(f" {go_quote(role)}" for role in r.roles))

    def user_get(self, user: str, r: rpc_pb2.AuthUserGetResponse) -> None:
        self.unsupported()

    def user_list(self, r: rpc_pb2.AuthUserListResponse) -> None:
        self.unsupported()

    def auth_status(self, r: rpc_pb2.AuthStatusResponse) -> None:
        self.unsupported()

    def member_add(self, r: rpc_pb2.MemberAddResponse) -> None:
        self.unsupported()

    def member_remove(self, member_id: int, r: rpc_pb2.MemberRemoveResponse) -> None:
        self.unsupported()

    def member_update(self, member_id: int, r: rpc_pb2.MemberUpdateResponse) -> None:
        self.unsupported()

    def member_promote(self, member_id: int, r: rpc_pb2.MemberPromoteResponse) -> None:
        self.unsupported()


class TablePrinter(Printer):
    """Tables for the list-shaped answers, drawn as etcdctl's tablewriter does:
    upper-case centred headers, right-aligned cells."""

    name = "table"

    def _table(self, hdr: list[str], rows: list[list[str]]) -> None:
        headers = [h.upper() for h in hdr]
        text = tabulate(
            rows,
            headers=headers,
            tablefmt="pretty",
            colalign=["right"] * len(hdr),
            headersglobalalign="center",
            disable_numparse=True,
        )
        write(text)

    def member_list(self, r: rpc_pb2.MemberListResponse) -> None:
        self._table(*member_list_rows(r))

    def endpoint_health(self, rows: Sequence[EpHealth]) -> None:
        self._table(*endpoint_health_rows(rows))

    def endpoint_status(self, rows: Sequence[EpStatus]) -> None:
        self._table(*endpoint_status_rows(rows))

    def endpoint_hashkv(self, rows: Sequence[EpHashKV]) -> None:
        self._table(*endpoint_hashkv_rows(rows))

    def snapshot_status(self, st: SnapshotStatus) -> None:
        self._table(*snapshot_status_rows(st))


_FORMATS: dict[str, type[Printer]] = {
    "simple": SimplePrinter,
    "json": JsonPrinter,
    "fields": FieldsPrinter,
    "protobuf": ProtobufPrinter,
    "table": TablePrinter,
}


def printer_for(fmt: str, is_hex: bool) -> Printer:
    """The printer for --write-out; CtlError for an unknown format."""
    cls = _FORMATS.get(fmt)
    if cls is None:
        raise CtlError(EXIT_BAD_FEATURE, "unsupported output format")
    return cls(is_hex)
