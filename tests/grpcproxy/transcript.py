"""One etcdctl script run through a gRPC proxy, printed output masked where
it differs by nature (ids, terms, addresses, timings), for comparing
etcdcore's proxy with etcd's on the same kind of cluster."""

from __future__ import annotations

import re

from harness import GrpcProxy

# (args, stdin) in order; every command etcd's proxy serves.
SCRIPT: list[tuple[list[str], str | None]] = [
    (["put", "a", "1"], None),
    (["put", "b", "2"], None),
    (["put", "c", "3"], None),
    (["put", "a", "4", "--prev-kv"], None),
    (["get", "a"], None),
    (["get", "a", "c"], None),
    (["get", "", "--prefix", "--keys-only"], None),
    (["get", "", "--from-key", "--limit", "2"], None),
    (["get", "b", "--from-key"], None),
    (["get", "", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"], None),
    (["get", "", "--prefix", "--count-only", "-w", "json"], None),
    (["get", "a", "-w", "json"], None),
    (["get", "b", "--rev=2"], None),
    (["get", "a", "--consistency=s", "--print-value-only"], None),
    (["get", "a", "--consistency=s", "-w", "json"], None),
    (["put", "a", "5"], None),
    (["get", "a", "--consistency=s"], None),
    (["get", "a", "--rev=99"], None),
    (["txn"], 'mod("a") > "0"\n\nput x 1\nget a\n\nput y 2\n\n'),
    (["txn", "-w", "json"], 'version("zz") = "0"\n\nput zz 1\nget zz\n\n\n'),
    (["get", "zz", "--consistency=s"], None),
    (["del", "b", "--prev-kv"], None),
    (["del", "nothing"], None),
    (["del", "x", "z", "--prev-kv", "-w", "json"], None),
    (["compaction", "4"], None),
    (["get", "a", "--rev=3"], None),
    (["get", "a", "--rev=3", "--consistency=s"], None),
    (["compaction", "2"], None),
    (["put", "", "v"], None),
    (["get", ""], None),
    (["lease", "grant", "100"], None),
    (["lease", "list"], None),
    (["put", "leased", "v", "--lease={lease}"], None),
    (["lease", "timetolive", "{lease}", "--keys"], None),
    (["lease", "revoke", "{lease}"], None),
    (["get", "leased"], None),
    (["lease", "revoke", "123"], None),
    (["lease", "timetolive", "123"], None),
    (["member", "list"], None),
    (["member", "list", "-w", "json"], None),
    (["endpoint", "status"], None),
    (["endpoint", "health"], None),
    (["alarm", "list"], None),
    (["alarm", "disarm"], None),
    (["defrag"], None),
    (["lock", "mylock", "echo", "locked"], None),
    (["user", "add", "root:rootpw"], None),
    (["user", "add", "alice:alicepw"], None),
    (["role", "add", "reader"], None),
    (["role", "grant-permission", "reader", "read", "a"], None),
    (["user", "grant-role", "alice", "reader"], None),
    (["user", "list"], None),
    (["role", "get", "reader"], None),
    (["auth", "enable"], None),
    (["--user=alice:alicepw", "get", "a"], None),
    (["--user=alice:alicepw", "put", "a", "9"], None),
    (["--user=alice:alicepw", "get", "c"], None),
    (["--user=root:rootpw", "put", "a", "10"], None),
    (["--user=root:rootpw", "get", "", "--prefix", "--keys-only"], None),
    (["get", "a"], None),
    (["--user=root:rootpw", "auth", "disable"], None),
    (["get", "", "--prefix", "--count-only"], None),
    (["del", "", "--prefix"], None),
    (["get", "", "--prefix"], None),
]

_IDS = re.compile(r'("?(cluster_id|member_id|raft_term|ClusterID|MemberID|RaftTerm)"?\s*:\s*)\d+')
_TOOK = re.compile(r"took = [0-9.]+[a-zµ]+")
_LEASE = re.compile(r"\b[0-9a-f]{16}\b")
_LEASE_JSON = re.compile(r'("(ID|lease)"\s*:\s*)\d+')
_STATUS = re.compile(r"^ENDPOINT, [0-9a-f]+, ([^,]+), [0-9.]+ [kMG]?B, ", re.M)


def mask(text: str, endpoint: str) -> str:
    text = text.replace(endpoint, "ENDPOINT")
    text = _IDS.sub(r"\g<1>0", text)
    text = _TOOK.sub("took = T", text)
    # The member id, and the database size (a bbolt file grows by steps at
    # times etcd chooses).
    text = _STATUS.sub(r"ENDPOINT, ID, \1, SIZE, ", text)
    text = _LEASE.sub("LEASE", text)
    text = _LEASE_JSON.sub(r"\g<1>0", text)
    # etcdctl's own log lines carry timestamps and client-internal addresses.
    return "\n".join(line for line in text.splitlines() if not line.startswith('{"level"'))


def transcript(proxy: GrpcProxy) -> list[tuple[str, int, str, str]]:
    out = []
    lease = ""
    for args, stdin in SCRIPT:
        argv = [a.replace("{lease}", lease) for a in args]
        proc = proxy.etcdctl(*argv, input=stdin, check=False)
        if args[:2] == ["lease", "grant"]:
            lease = proc.stdout.split()[1]
        out.append(
            (" ".join(args), proc.returncode, mask(proc.stdout, proxy.endpoint),
             mask(proc.stderr, proxy.endpoint))
        )  # fmt: skip
    return out
