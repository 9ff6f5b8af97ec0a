#!/usr/bin/env bash
# Image load: a ~300 MB, five-layer image (bench/make-image.py), gzip and
# zstd, loaded by `berth-image load` into an empty store, against this
# machine's floor for the same work and against `docker load` when a Docker
# daemon answers. Prints medians and berth's ratio to each. Needs root.
#
# The floor does per layer what a load cannot skip: read the blob and hash
# it, decompress, hash the tar and write its files:
#   tee < layer.tar.gz >(sha256sum) | gzip -dc | tee >(sha256sum) | tar -x
# `floor` runs the layers one after another, `floor-par` on every core.
# berth also keeps each blob in its content store and fsyncs it.
# Target (issue 3): berth within 1.3x of the floor.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"
size="${SIZE_MB:-300}"
./scripts/deps.sh
cargo build --release --locked -p berth-image
bin="$PWD/target/release/berth-image"
work="$(mktemp -d /var/tmp/berth-bench-image.XXXXXX)"
docker_ok=false
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then docker_ok=true; fi
cleanup() {
    if $docker_ok; then docker rmi -f bench:gz bench:zst >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
python3 bench/make-image.py "$work/img" "$size"
cat > "$work/floor.sh" <<'EOF'
#!/usr/bin/env bash
# floor.sh DIR gz|zst OUT PARALLEL
set -euo pipefail
dir=$1 kind=$2 out=$3 par=$4
one() {
    local i=$1 dec=(gzip -dc)
    [[ $kind == zst ]] && dec=(zstd -dcq)
    mkdir -p "$out/$i"
    tee < "$dir/layer$i.tar.$kind" >(sha256sum >/dev/null) | "${dec[@]}" | tee >(sha256sum >/dev/null) | tar -x -C "$out/$i"
}
export -f one; export dir kind out
printf '%s\n' 0 1 2 3 4 | xargs -P "$par" -I{} bash -c 'one {}'
EOF
chmod +x "$work/floor.sh"
ls -l "$work/img"/image-*.tar
declare -A median
measure() { # kind name command prepare
    local kind=$1 name=$2
    hyperfine --warmup 1 --runs "$runs" --prepare "$4; sync" --export-json "$work/$kind-$name.json" "$3" >/dev/null
    median[$kind-$name]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$work/$kind-$name.json")
    printf '%-4s %-10s median %7.3f s\n' "$kind" "$name" "${median[$kind-$name]}"
}
for kind in gz zst; do
    out="$work/out" store="$work/store"
    measure "$kind" floor "$work/floor.sh $work/img $kind $out 1" "rm -rf $out"
    measure "$kind" floor-par "$work/floor.sh $work/img $kind $out $(nproc)" "rm -rf $out"
    measure "$kind" berth "$bin --root $store load -i $work/img/image-$kind.tar" "rm -rf $store"
    docker_err=""
    if $docker_ok; then docker rmi -f bench:gz bench:zst >/dev/null 2>&1 || true; fi
    if $docker_ok && ! docker_err="$(docker load -q -i "$work/img/image-$kind.tar" 2>&1 >/dev/null)"; then
        printf '%-4s %-10s skipped: %s\n' "$kind" docker "$(head -c 200 <<<"$docker_err")"
    elif $docker_ok; then
        # Both tags go: the two images share their diff ids, so a layer
        # left by one would make the other's load skip it.
        measure "$kind" docker "docker load -q -i $work/img/image-$kind.tar" "docker rmi -f bench:gz bench:zst >/dev/null 2>&1 || true"
    fi
    rm -rf "$out" "$store"
    for other in floor floor-par docker; do
        if [[ -n "${median[$kind-$other]:-}" ]]; then
            python3 -c 'import sys; print("%s: berth / %s = %.2fx" % (sys.argv[1], sys.argv[2], float(sys.argv[3]) / float(sys.argv[4])))' \
                "$kind" "$other" "${median[$kind-berth]}" "${median[$kind-$other]}"
        fi
    done
done
