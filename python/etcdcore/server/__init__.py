"""The etcdcore server process: etcd's flags in, a running member out."""
