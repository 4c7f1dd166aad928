#!/usr/bin/env bash
# make bench-verify: how close `petra-oci verify` runs to the machine's SHA-256 limit.
# A measurement, not a test.
#
# Pushes one artifact of BENCH_VERIFY_FILES random blobs of BENCH_VERIFY_MB MiB each
# (default 8 x 512 MiB = 4 GiB) to an olareg on 127.0.0.1, packs it into a signed bundle,
# then times, from the page cache:
#   petra-oci verify                  (signature, metadata, every file hashed in parallel)
#   openssl dgst -sha256, 2 at a time (the yardstick: SHA extensions, both cores)
#   openssl dgst -sha256, 1 at a time
# and prints throughput and petra-oci's ratio to the two-core openssl figure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FILES=${BENCH_VERIFY_FILES:-8}
MB=${BENCH_VERIFY_MB:-512}
TOOLS=$(go env GOPATH)/bin
WORK=$ROOT/.bench/verify
log() { printf 'bench-verify: %s\n' "$*" >&2; }

command -v openssl >/dev/null || { log "openssl is missing"; exit 1; }
for t in oras olareg cosign; do [ -x "$TOOLS/$t" ] || { log "$t missing: run make tools"; exit 1; }; done
rm -rf "$WORK" && mkdir -p "$WORK/files"
trap 'kill $OLAREG 2>/dev/null || true; rm -rf "$WORK"' EXIT

go build -o "$ROOT/bin/petra-oci" ./cmd/petra-oci
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TOOLS/olareg" serve --addr 127.0.0.1 --port "$PORT" --dir "$WORK/store" -v error &
OLAREG=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done

log "generating $FILES x $MB MiB"
args=()
for i in $(seq "$FILES"); do
	head -c "$((MB << 20))" /dev/urandom >"$WORK/files/blob$i"
	args+=("blob$i:application/octet-stream")
done
(cd "$WORK/files" && "$TOOLS/oras" push --plain-http "127.0.0.1:$PORT/bench/verify:v1" "${args[@]}" >/dev/null)
rm -rf "$WORK/files"
(cd "$WORK" && COSIGN_PASSWORD=bench "$TOOLS/cosign" generate-key-pair --output-key-prefix bundle >/dev/null 2>&1)
COSIGN_PASSWORD=bench "$ROOT/bin/petra-oci" -q pack --plain-http --image "127.0.0.1:$PORT/bench/verify:v1" -o "$WORK/bundle" --key "$WORK/bundle.key" >/dev/null 2>&1
kill $OLAREG; rm -rf "$WORK/store"

bytes=$(du -sb "$WORK/bundle" | cut -f1)
cat "$WORK"/bundle/blobs/sha256/* >/dev/null # warm the page cache
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}'; }
v=$(secs "$ROOT/bin/petra-oci" verify --key "$WORK/bundle.pub" --state "$WORK/state.json" "$WORK/bundle")
o2=$(secs sh -c "ls $WORK/bundle/blobs/sha256/* | xargs -P 2 -n 1 openssl dgst -sha256")
o1=$(secs sh -c "ls $WORK/bundle/blobs/sha256/* | xargs -P 1 -n 1 openssl dgst -sha256")
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN{printf "%d", b/s/1e6}'; }
printf '%-34s %8s %10s\n' "what ($((bytes >> 20)) MiB, page cache)" "seconds" "MB/s"
printf '%-34s %8.2f %10s\n' "petra-oci verify" "$v" "$(mbps "$v")"
printf '%-34s %8.2f %10s\n' "openssl dgst -sha256, 2 parallel" "$o2" "$(mbps "$o2")"
printf '%-34s %8.2f %10s\n' "openssl dgst -sha256, 1 at a time" "$o1" "$(mbps "$o1")"
awk -v o="$o2" -v v="$v" 'BEGIN{printf "petra-oci verify / two-core openssl throughput: %.2f\n", o/v}'
