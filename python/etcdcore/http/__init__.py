"""etcd's HTTP endpoints, served by the Python process with aiohttp.

- :mod:`.jsonpb`: grpc-gateway's JSON mapping of the protobuf messages;
- :mod:`.gateway`: the ``/v3/...`` JSON API, answered by calling this
  member's own gRPC listener (so limits, auth and error texts are gRPC's);
- :mod:`.health`: ``/health``, ``/livez``, ``/readyz`` and ``/version``;
- :mod:`.metrics`: ``/metrics`` (a per-server Prometheus registry);
- :mod:`.console`: the web console (``--enable-console``);
- :mod:`.server`: the listeners (--listen-client-http-urls, --listen-metrics-urls,
  and the private socket behind the gRPC client URLs);
- :mod:`.client_port`: that private socket, to which the core forwards the
  client URLs' requests other than gRPC (etcd's cmux).
"""
