"""``etcdcore grpc-proxy``: etcd's gRPC proxy (flags in :mod:`.config`, the
process in :mod:`.main`; the proxy itself is the core's ``grpcproxy``)."""
