#!/usr/bin/env bash
# Install the Debian packages berth builds and tests with (root, Debian 12).
set -euo pipefail
pkgs=(busybox-static runc nftables xz-utils libseccomp-dev pkg-config iproute2 procps gcc hyperfine skopeo python3 zstd curl bsdutils docker-compose docker-registry openssl apache2-utils bzip2 protobuf-compiler containernetworking-plugins iptables golang-go golang-github-docker-spdystream-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
