"""Write an OCI image archive of static files FROM scratch, with no registry and no daemon."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    """Add one regular file with fixed owner and time, so the archive is reproducible."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _layer(files: list[tuple[Path, str]]) -> bytes:
    """Return the uncompressed tar of the image's single layer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for src, dst in files:
            _add_bytes(tar, dst.lstrip("/"), src.read_bytes(), 0o755)
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, object]:
    """Store a blob by digest and return its OCI descriptor."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def build(ref: str, files: list[tuple[Path, str]], entrypoint: list[str], user: str) -> bytes:
    """Return the bytes of an OCI archive (image layout in a tar) for one image."""
    blobs: dict[str, bytes] = {}
    layer = _layer(files)
    layer_desc = _blob(blobs, gzip.compress(layer, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": user, "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    config_desc = _blob(blobs, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = _blob(
        blobs, json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json"
    )
    manifest_desc["annotations"] = {
        "io.containerd.image.name": ref,
        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "manifests": [manifest_desc]}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in sorted(blobs.items()):
            _add_bytes(tar, "blobs/sha256/" + digest.split(":", 1)[1], data)
    return out.getvalue()


def main() -> None:
    """Parse the arguments and write the archive."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ref", required=True, help="image name, e.g. localhost/x/pause:1")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--file", action="append", default=[], help="SRC:DST, repeatable")
    parser.add_argument("--entrypoint", required=True)
    parser.add_argument("--user", default="65534:65534")
    args = parser.parse_args()
    files = [(Path(src), dst) for src, dst in (f.rsplit(":", 1) for f in args.file)]
    tmp = args.out.with_suffix(".tmp")
    tmp.write_bytes(build(args.ref, files, [args.entrypoint], args.user))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
