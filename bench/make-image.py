#!/usr/bin/env python3
"""make-image.py DIR [MB]: a deterministic image of five layers, about MB
megabytes of files in all (300 by default), for the image-load benchmark.

Each layer mixes many small files with a few large ones; about a third of
the bytes are random and the rest word text, so compression behaves like it does on real
layers. Writes into DIR:

  layer{i}.tar, layer{i}.tar.gz, layer{i}.tar.zst   the layers
  image-gz.tar, image-zst.tar   `docker save` archives (OCI layout with
                                manifest.json) of the image, named
                                bench:gz and bench:zst
"""
import base64
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile

out = sys.argv[1]
total = int(sys.argv[2]) if len(sys.argv) > 2 else 300
rng = random.Random(1)
os.makedirs(out, exist_ok=True)


# Text from a vocabulary of 4096 words, sliced at random offsets: it
# compresses about as well as the text and code in real layers.
VOCAB = [base64.b32encode(rng.randbytes(rng.randint(2, 7))).decode().lower().rstrip("=") for _ in range(4096)]
TEXT = " ".join(rng.choices(VOCAB, k=1_500_000)).encode()


def data(n):
    if rng.random() < 0.3:
        return rng.randbytes(n)
    chunks = []
    while n > 0:
        k = min(n, len(TEXT) // 2)
        at = rng.randrange(len(TEXT) - k)
        chunks.append(TEXT[at:at + k])
        n -= k
    return b"".join(chunks)


def layer(i, size):
    path = f"{out}/layer{i}.tar"
    written = 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        def add(name, payload, mode=0o644):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mode = mode
            info.mtime = 1_700_000_000
            t.addfile(info, io.BytesIO(payload))
        for d in ["usr", f"usr/lib{i}", f"usr/share{i}"]:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 1_700_000_000
            t.addfile(info)
        n = 0
        while written < size:
            if n % 50 == 49:
                blob = data(rng.randint(2 << 20, 8 << 20))
                add(f"usr/lib{i}/big{n}.so", blob, 0o755)
            else:
                blob = data(rng.randint(1 << 10, 64 << 10))
                add(f"usr/share{i}/f{n}", blob)
            written += len(blob)
            n += 1
    return path


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


layers = [layer(i, total * (1 << 20) // 5) for i in range(5)]
diff_ids = ["sha256:" + sha(p) for p in layers]
for p in layers:
    subprocess.run(["gzip", "-6", "-k", "-f", p], check=True)
    subprocess.run(["zstd", "-q", "-3", "-f", p, "-o", p + ".zst"], check=True)

config = json.dumps({
    "architecture": "amd64",
    "os": "linux",
    "config": {"Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
}, sort_keys=True).encode()


def archive(kind, ext, media):
    name = f"{out}/image-{kind}.tar"
    with tarfile.open(name, "w") as t:
        def add(path, payload=None, file=None):
            info = tarfile.TarInfo(path)
            if file:
                info.size = os.path.getsize(file)
                with open(file, "rb") as f:
                    t.addfile(info, f)
            else:
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
        cfg = hashlib.sha256(config).hexdigest()
        add(f"blobs/sha256/{cfg}", config)
        descs = []
        for p in layers:
            blob = p + ext
            d = sha(blob)
            add(f"blobs/sha256/{d}", file=blob)
            descs.append({"mediaType": media, "digest": f"sha256:{d}", "size": os.path.getsize(blob)})
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": f"sha256:{cfg}", "size": len(config)},
            "layers": descs,
        }).encode()
        md = hashlib.sha256(manifest).hexdigest()
        add(f"blobs/sha256/{md}", manifest)
        ref = f"docker.io/library/bench:{kind}"
        add("index.json", json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{md}",
            "size": len(manifest), "annotations": {"io.containerd.image.name": ref,
                                                   "org.opencontainers.image.ref.name": kind}}]}).encode())
        add("manifest.json", json.dumps([{"Config": f"blobs/sha256/{cfg}", "RepoTags": [f"bench:{kind}"],
                                          "Layers": [f"blobs/sha256/{d['digest'][7:]}" for d in descs]}]).encode())
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')


archive("gz", ".gz", "application/vnd.oci.image.layer.v1.tar+gzip")
archive("zst", ".zst", "application/vnd.oci.image.layer.v1.tar+zstd")
