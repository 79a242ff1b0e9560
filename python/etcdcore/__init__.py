"""etcdcore: an etcd v3 compatible key-value store with a Rust core."""

__version__ = "0.1.0"
#: The etcd API version etcdcore speaks (what Status and /version report).
ETCD_VERSION = "3.5.1"
