"""Type stub for the compiled Rust core (``etcdcore._core``).

The core owns the gRPC wire, the KV data path, the MVCC store, the WAL,
snapshots, Raft and the lessor. Python drives it through :class:`Core`: it
starts and stops the member, answers the service calls the core forwards over
the bridge, and proposes the few writes that originate in Python services
(alarms, compaction, auth).

Every method that waits on Raft releases the GIL; call those from an executor
thread when on the asyncio loop.
"""

from collections.abc import Callable
from typing import Any, Literal

class CoreError(Exception):
    """A failure carrying etcd's gRPC status code and message text.

    ``args == (code, message)``, e.g. ``(5, "etcdserver: requested lease not found")``.
    """

    code: int
    message: str

class TlsConfig:
    """One side's TLS (client or peer listeners, outgoing peer connections):
    PEM certificate and key files, the CA that verifies the other side
    (client certificates are required when ``client_cert_auth``), the Go
    names of allowed TLS 1.2 cipher suites (all when empty), the lowest
    version ("TLS1.2" or "TLS1.3") and a certificate revocation list whose
    listed client certificates are refused (etcd's --client-crl-file)."""

    def __init__(
        self,
        *,
        cert_file: str,
        key_file: str,
        trusted_ca_file: str,
        client_cert_auth: bool,
        cipher_suites: list[str],
        min_version: str,
        crl_file: str = "",
    ) -> None: ...

class CoreConfig:
    """Everything the core needs to start one member (built by the Python process)."""

    def __init__(
        self,
        *,
        name: str,
        data_dir: str,
        client_listen: list[str],
        client_urls: list[str],
        peer_listen: list[str],
        peer_urls: list[str],
        initial_cluster: list[tuple[str, list[str]]],
        initial_cluster_state: Literal["new", "existing"],
        cluster_token: str,
        snapshot_count: int,
        max_request_bytes: int,
        max_txn_ops: int,
        max_concurrent_streams: int = 2**32 - 1,
        quota_backend_bytes: int,
        heartbeat_ms: int,
        election_ms: int,
        client_tls: TlsConfig | None = None,
        peer_tls: TlsConfig | None = None,
        jwt: JwtTokens | None = None,
        client_http_gateway: str | None = None,
        backend_batch_interval_ms: int = 0,
        backend_batch_limit: int = 0,
        lease_checkpoint_interval_ms: int = 0,
        watch_progress_notify_interval_ms: int = 600_000,
    ) -> None: ...
    # lease_checkpoint_interval_ms: how often the leader checkpoints remaining
    # lease TTLs (--experimental-enable-lease-checkpoint); 0: never.

class JwtTokens:
    """The key of ``--auth-token jwt,...``: signs etcd's JWT tokens and verifies them."""

    @staticmethod
    def from_flag(flag: str) -> tuple[JwtTokens | None, list[str]]:
        """(provider, unknown option names) for an --auth-token value; None for
        simple tokens. ValueError carries etcd's message for a value it refuses."""
    def sign(self, username: str, revision: int) -> str:
        """A token for ``username`` at auth revision ``revision`` (CoreError on a
        verify-only member, given only a public key)."""
    def verify(self, token: str) -> tuple[str, int] | None:
        """(user name, revision) of a valid, unexpired token; else None."""
    @property
    def ttl_seconds(self) -> float: ...

# Items returned by Core.drain():
#   ("unary", call_id, method, request_bytes)  answer with Core.respond
#   ("open", call_id, method)                  a streaming call began
#   ("msg", call_id, message_bytes)            a client message on that stream
#   ("halfclose", call_id)                     the client ended its request stream
#   ("close", call_id)                         the client went away (or the call ended)
#   ("removed",)                               this member was removed from the cluster
#   ("published",)                             this member's name and client URLs are committed
BridgeItem = (
    tuple[Literal["unary"], int, str, bytes]
    | tuple[Literal["open"], int, str]
    | tuple[Literal["msg"], int, bytes]
    | tuple[Literal["halfclose"], int]
    | tuple[Literal["close"], int]
    | tuple[Literal["removed"]]
    | tuple[Literal["published"]]
    | tuple[Literal["failed"], str]
)

class Core:
    """One etcdcore member: its store, its Raft node and its gRPC listeners."""

    def __init__(self, config: CoreConfig) -> None: ...
    def start(self) -> None:
        """Recover from the data dir (backend + WAL), start Raft, the peer
        transport and the listeners. With ``initial_cluster_state="existing"`` and
        a fresh data dir, first asks the other members for the cluster to join.

        Raises CoreError with a clear message when the data dir is corrupt or the
        cluster cannot be joined.
        """
    def stop(self) -> None:
        """Stop accepting calls, finish in-flight proposals, fsync, close."""
    def bridge_fd(self) -> int:
        """A non-blocking fd that becomes readable when :meth:`drain` has items."""
    def drain(self) -> list[BridgeItem]:
        """Take every waiting bridge item (read the fd's bytes first)."""
    def respond(self, call_id: int, code: int, message: str, payload: bytes) -> None:
        """Answer a unary call: code 0 sends ``payload``; otherwise a gRPC error."""
    def stream_send_many(self, items: list[tuple[int, bytes]]) -> list[int]:
        """Send many stream messages in one crossing (GIL released); returns the
        call ids whose client is gone."""
    def stream_end(self, call_id: int, code: int, message: str) -> None:
        """Finish a streaming call with a gRPC status (0 = OK)."""

    # -- state the services read ------------------------------------------------
    def watcher_count(self) -> int:
        """Watchers open on this member."""
    def header(self) -> tuple[int, int, int, int]:
        """(cluster_id, member_id, revision, raft_term) for a ResponseHeader."""
    def status(self) -> dict[str, int | str | bool]:
        """Keys: db_size, db_size_in_use, leader, raft_index, raft_term,
        raft_applied_index, is_learner, leader_changes, member_id, cluster_id, revision,
        compact_revision, keys."""
    def metrics(self) -> dict[str, Any]:
        """The core's counters at this moment, for /metrics. Keys:
        proposals_pending, proposals_failed (ints); wal_fsync, backend_commit,
        backend_snapshot (each ([(upper bound s, cumulative count)], sum s, count));
        peers ([(member id, sent bytes, received bytes, sent failures)]); grpc
        ([((grpc_type, service, method, pre-initialised),
        (started, msg received, msg sent, [handled by code 0..16]))])."""
    def members(self) -> list[tuple[int, str, list[str], list[str], bool]]:
        """(id, name, peer_urls, client_urls, is_learner) per member, as replicated.
        A member's name and client URLs are empty until it has published them."""
    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash, compact_revision, hash_revision)."""
    def defragment(self) -> tuple[int, int]:
        """Rewrite the backend file without the space compaction freed (applies
        wait meanwhile, reads go on). Returns the file size (before, after)."""
    def failure(self) -> str | None:
        """Why the member stopped for good (a WAL or backend write failed), if
        it did; the process must then exit non-zero."""
    def alarms(self) -> list[tuple[int, int]]:
        """(member_id, alarm_type) of every raised alarm."""

    # -- writes that start in Python; each blocks until applied -----------------
    def alarm(self, action: int, member_id: int, alarm: int) -> list[tuple[int, int]]:
        """Propose an AlarmRequest (GET=0, ACTIVATE=1, DEACTIVATE=2); returns the alarms."""
    def compact(self, revision: int) -> int:
        """Propose a physical compaction at ``revision`` (auto-compaction); returns
        the store's revision. CoreError(11, ...) when already compacted there."""
    def is_leader(self) -> bool: ...
    def removed(self) -> bool:
        """Whether this member was removed from the cluster (it then stops)."""

    # -- membership (Raft configuration changes); each blocks until applied -----
    def member_add(self, peer_urls: list[str], is_learner: bool) -> int:
        """Add a member (a learner when asked); returns its new id. CoreError with
        etcd's text for a used peer URL, a removed id or a second learner."""
    def member_remove(self, member_id: int) -> None: ...
    def member_update(self, member_id: int, peer_urls: list[str]) -> None: ...
    def member_promote(self, member_id: int) -> None:
        """Promote a learner. Only the leader can tell whether it caught up:
        elsewhere this fails with "etcdserver: not leader"."""
    def move_leader(self, target: int) -> None:
        """Transfer leadership to ``target`` and wait until it leads (this member
        must lead)."""

    # -- auth (changes go through Raft; each blocks until applied) ---------------
    def auth_propose(self, request: bytes) -> None:
        """Apply a serialized etcdcore.AuthAdminRequest; CoreError with etcd's
        text when the store refuses it."""
    def auth_status(self) -> tuple[bool, int]:
        """(enabled, revision) of the auth store."""
    def auth_credentials(self, name: str) -> tuple[str, bool] | None:
        """(bcrypt hash, no-password user) of a user, or None."""
    def auth_user_roles(self, name: str) -> list[str] | None: ...
    def auth_users(self) -> list[str]: ...
    def auth_role_permissions(self, name: str) -> list[tuple[int, bytes, bytes]] | None:
        """(type, key, range end) of each permission of a role, or None."""
    def auth_roles(self) -> list[str]: ...
    def internal_token(self) -> str:
        """The token this process's own clients send to pass the auth checks."""

def snapshot_status(path: str) -> tuple[int, int, int, int]:
    """(hash, revision, total keys, total size) of a snapshot file, read in
    pieces; CoreError when its checksums do not hold."""

def snapshot_restore(
    path: str,
    *,
    data_dir: str,
    name: str,
    initial_cluster: list[tuple[str, list[str]]],
    cluster_token: str,
    skip_hash_check: bool,
) -> None:
    """Write a new data dir for member ``name`` of ``initial_cluster`` holding
    the snapshot file's keys, revisions and leases; CoreError when the data
    dir has content, the name is not in the cluster or a checksum fails."""

# -- bbolt files: etcd's backend and snapshot format ---------------------------
# Errors: ValueError for a corrupt file (the message names the page, offset and
# what is wrong) or data bbolt cannot hold, OSError for I/O, KeyError for a
# missing bucket.

def bbolt_buckets(path: str) -> list[bytes]:
    """The top-level bucket names of a bbolt file (an etcd data dir's
    ``member/snap/db``, or a snapshot: its SHA-256 trailer is ignored here),
    in bbolt's byte order."""

class BboltItems:
    """A bucket's entries in key order, read page by page from the file."""

    def __iter__(self) -> BboltItems: ...
    def __next__(self) -> tuple[bytes, bytes | None]:
        """(key, value); the value is None for a nested bucket, as bbolt's ForEach."""

def bbolt_items(path: str, bucket: bytes) -> BboltItems:
    """The entries of the top-level bucket ``bucket`` of a bbolt file."""

def bbolt_write(
    path: str,
    buckets: dict[bytes, list[tuple[bytes, bytes]]],
    *,
    sha256_trailer: bool = False,
) -> int:
    """Write ``buckets`` (name -> (key, value) pairs, in any order; a key
    given twice is a ValueError) as a new bbolt file, with etcd's snapshot
    SHA-256 trailer when ``sha256_trailer``; returns the file's size."""

class GrpcProxyConfig:
    """The settings of ``etcdcore grpc-proxy start`` (see grpcproxy/config.py)."""

    def __init__(
        self,
        *,
        listen_addr: str,
        endpoints: list[str],
        advertise_client_url: str,
        resolver_prefix: str,
        resolver_ttl: int,
        namespace: bytes,
        metrics_addr: str | None,
        max_send_bytes: int,
        max_recv_bytes: int,
        dial_timeout: float,
        cert: str,
        key: str,
        cacert: str,
        insecure_skip_tls_verify: bool,
        cert_file: str,
        key_file: str,
        trusted_ca_file: str,
        keepalive_interval: float,
        keepalive_timeout: float,
        hostname: str,
        auto_sync_interval: float,
        debug: bool = False,
    ) -> None: ...

class GrpcProxy:
    """etcd's gRPC proxy, served by the core on threads of its own."""

    def __init__(self, config: GrpcProxyConfig) -> None: ...
    def start(self) -> None:
        """Binds and serves. OSError: a listener cannot be bound (etcd's
        words); RuntimeError: settings refused (TLS files...)."""
    def local_addr(self) -> str | None: ...
    def wait(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds; True if serving stopped on its own."""
    def watch_stats(self) -> tuple[int, int]:
        """(watchers open on the cluster, client watchers served by them)."""
    def stop(self) -> None: ...

class Gateway:
    """etcd's L4 gateway (``etcdcore gateway start``), running in the core."""

    def __init__(
        self,
        listener_fd: int,
        endpoints: list[tuple[str, int, int]],
        retry_delay_seconds: float,
        on_event: Callable[[str, str, str], None],
    ) -> None:
        """Serve the listening socket ``listener_fd`` (owned from now on),
        forwarding each connection to one of ``endpoints`` ((host:port, SRV
        priority, SRV weight)). ``on_event(kind, address, error)``: kind is
        "deactivated", "reactivate-failed" or "activated"."""
    def stop(self) -> None:
        """Stop accepting and drop every proxied connection."""
