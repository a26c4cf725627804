"""Regenerate the committed stubs in vaultd/v1/ from protos/: `python protos/generate.py`.

tests/test_generated.py runs `generate(tmp)` and fails when the committed stubs drift.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

PROTOS = Path(__file__).resolve().parent
REPO = PROTOS.parent


def _plugin(name: str) -> str:
    """mypy-protobuf's protoc plugin, from the interpreter's own environment (a venv need not
    be on PATH)."""
    found = Path(sys.executable).parent / name
    return f"--plugin={name}={found}" if found.exists() else f"--plugin={name}={shutil.which(name)}"


def generate(out_dir: Path) -> list[Path]:
    """Write *_pb2.py, *_pb2_grpc.py and their typed *.pyi stubs (mypy-protobuf) for every
    proto under protos/ into out_dir."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        _plugin("protoc-gen-mypy"),
        _plugin("protoc-gen-mypy_grpc"),
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    return sorted((out_dir / "vaultd" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    written = generate(REPO)
    init = REPO / "vaultd" / "v1" / "__init__.py"
    init.write_text(
        '"""Generated gRPC stubs for vaultd.v1 (protos/generate.py); never edit by hand."""\n'
    )
    print("\n".join(str(p.relative_to(REPO)) for p in written), file=sys.stderr)
