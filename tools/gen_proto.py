#!/usr/bin/env python3
"""Generate the Python protobuf/gRPC modules for etcd's v3 API.

Runs ``grpc_tools.protoc -I proto`` over the etcd API .proto files and writes
``*_pb2.py`` and ``*_pb2_grpc.py``, with type stubs for both from mypy-protobuf
(``*_pb2.pyi``, ``*_pb2_grpc.pyi``, what mypy checks the package against), into
``python/etcdcore/proto/`` with the same subpackage layout as ``proto/``
(``mvccpb/kv_pb2.py``, ``etcdserverpb/rpc_pb2.py``, ...). protoc emits
top-level imports such as ``from mvccpb import kv_pb2``; these are rewritten to
``from etcdcore.proto.mvccpb import kv_pb2`` so the modules work as part of the
installed ``etcdcore`` package.

Usage: ``python tools/gen_proto.py`` (from anywhere; paths are relative to the
repository root). Requires grpcio-tools and mypy-protobuf (its protoc-gen-mypy
and protoc-gen-mypy_grpc plugins on PATH).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "python" / "etcdcore" / "proto"
PY_PACKAGE = "etcdcore.proto"

#: The .proto files to compile, relative to PROTO_DIR.
PROTO_FILES: tuple[str, ...] = (
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lock/v3lock.proto",
    "v3election/v3election.proto",
    "etcdcore/internal.proto",
)

GENERATED_SUFFIXES: tuple[str, ...] = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _subpackages() -> list[str]:
    """Top-level directories of PROTO_FILES, i.e. the generated subpackages."""
    return sorted({p.split("/")[0] for p in PROTO_FILES})


def _clean() -> None:
    """Remove previously generated modules so stale files do not linger."""
    for sub in _subpackages():
        d = OUT_DIR / sub
        if d.is_dir():
            shutil.rmtree(d)


def _run_protoc() -> None:
    """Invoke grpc_tools.protoc on all PROTO_FILES, writing into OUT_DIR."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={OUT_DIR}",
        f"--mypy_out={OUT_DIR}",
        f"--mypy_grpc_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        *(str(PROTO_DIR / p) for p in PROTO_FILES),
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")


def _rewrite_imports(path: Path, subpackages: list[str]) -> bool:
    """Make protoc's absolute imports of our subpackages package-relative.

    Returns True if the file was changed.
    """
    alt = "|".join(re.escape(s) for s in subpackages)
    pattern = re.compile(rf"^(\s*)from ({alt})((?:\.\w+)*) import ", re.MULTILINE)
    text = path.read_text()
    new = pattern.sub(rf"\1from {PY_PACKAGE}.\2\3 import ", text)
    if new != text:
        path.write_text(new)
        return True
    return False


def _write_inits(subpackages: list[str]) -> None:
    """Ensure every generated directory (and its parents) is a package."""
    dirs = [OUT_DIR, *(OUT_DIR / s for s in subpackages)]
    for d in dirs:
        init = d / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated protobuf modules (see tools/gen_proto.py)."""\n')
    etcdcore_init = OUT_DIR.parent / "__init__.py"
    if not etcdcore_init.exists():
        etcdcore_init.write_text("")


def main() -> int:
    """Generate, fix imports, add __init__.py files; print what was written."""
    subpackages = _subpackages()
    _clean()
    _run_protoc()
    generated = sorted(
        f
        for s in subpackages
        for f in (OUT_DIR / s).iterdir()
        if f.name.endswith(GENERATED_SUFFIXES)
    )
    for f in generated:
        _rewrite_imports(f, subpackages)
    _write_inits(subpackages)
    for f in generated:
        print(f.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
