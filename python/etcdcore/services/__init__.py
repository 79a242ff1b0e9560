"""The gRPC services written in Python, served through the core's bridge.

Each service is a class built with the :class:`~etcdcore._core.Core` it serves and
exposing ``register(bridge)``, which binds its methods to their gRPC paths.
"""
