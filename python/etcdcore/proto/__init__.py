"""Generated protobuf modules (see tools/gen_proto.py)."""
