#!/usr/bin/env bash
# make bench (serve row): `crane pull` of the bench images from `petra-oci serve` versus from
# distribution v3 serving the same content. A measurement, not a test.
#
# Pushes N generated images (one shared base layer, one unique layer each, one referrer each)
# to a distribution v3 registry on 127.0.0.1, packs them into a signed bundle with petra-oci,
# then serves the same content two ways, each process started fresh before it is measured:
#
#   distribution  registry serve (filesystem storage holding exactly the pushed images)
#   petra-oci     serve BUNDLE   (verifies the whole bundle, then serves it; every blob is
#                                 hashed again while streamed)
#
# and times one `crane pull --format oci` of all N images into a fresh layout from each, in
# alternating order, BENCH_RUNS times (fastest wall reported). It prints wall time, throughput
# (distinct bytes pulled / wall), crane's peak RSS and the server's peak RSS (VmHWM) after the
# pulls, and serve's throughput ratio to distribution (>= 1.00 means serve is at least as fast).
#
# Settings (environment): BENCH_IMAGES (20), BENCH_BASE_MB (40), BENCH_UNIQUE_MB (16),
# BENCH_RUNS (5), BENCH_KEEP (0; 1 keeps .bench/serve).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

N=${BENCH_IMAGES:-20}
BASE_MB=${BENCH_BASE_MB:-40}
UNIQUE_MB=${BENCH_UNIQUE_MB:-16}
RUNS=${BENCH_RUNS:-5}
KEEP=${BENCH_KEEP:-0}

TOOLS=$(go env GOPATH)/bin
ORAS=$TOOLS/oras
CRANE=$TOOLS/crane
REGISTRY=$TOOLS/registry
COSIGN=$TOOLS/cosign
PETRA=$ROOT/bin/petra-oci
TIME=/usr/bin/time
WORK=$ROOT/.bench/serve

log() { printf 'bench-serve: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for t in "$ORAS" "$CRANE" "$REGISTRY" "$COSIGN"; do
	[ -x "$t" ] || die "$t missing: run 'make tools'"
done
[ -x "$TIME" ] || die "$TIME missing: run 'make tools' (Debian package 'time')"

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; rmdir "$ROOT/.bench" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK"/{gen,logs,pull}

# start_registry PORT: distribution on the bench storage; sets REG_PID.
start_registry() {
	distribution_config "$WORK/registry.yml" "$WORK/registry" "127.0.0.1:$1"
	OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true "$REGISTRY" serve "$WORK/registry.yml" >>"$WORK/logs/registry.log" 2>&1 &
	REG_PID=$!
	PIDS+=("$REG_PID")
	for _ in $(seq 1 100); do
		port_busy "$1" && return
		kill -0 "$REG_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$WORK/logs/registry.log" >&2
	die "distribution did not start"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# --- content ----------------------------------------------------------------------------
REG_PORT=$(free_port)
start_registry "$REG_PORT"
REG=127.0.0.1:$REG_PORT
cd "$WORK/gen"
head -c $((BASE_MB << 20)) /dev/urandom >base.bin
tar -cf base.tar base.bin && rm base.bin
base_diff=sha256:$(sha256sum base.tar | cut -d' ' -f1)
echo "bench referrer" >note.txt
for i in $(seq 1 "$N"); do
	head -c $((UNIQUE_MB << 20)) /dev/urandom >"unique-$i.bin"
	tar -cf "unique-$i.tar" "unique-$i.bin" && rm "unique-$i.bin"
	cat >"config-$i.json" <<-EOF
		{"architecture":"amd64","os":"linux","config":{"Labels":{"bench":"img-$i"}},"rootfs":{"type":"layers","diff_ids":["$base_diff","sha256:$(sha256sum "unique-$i.tar" | cut -d' ' -f1)"]}}
	EOF
	d=$("$ORAS" push --plain-http --no-tty --config "config-$i.json:application/vnd.oci.image.config.v1+json" \
		--format go-template --template '{{.digest}}' "$REG/bench/img-$i:v1" \
		"base.tar:application/vnd.oci.image.layer.v1.tar" "unique-$i.tar:application/vnd.oci.image.layer.v1.tar" 2>>"$WORK/logs/gen.log")
	"$ORAS" attach --plain-http --no-tty --artifact-type application/vnd.petra.bench.note "$REG/bench/img-$i@$d" note.txt >>"$WORK/logs/gen.log" 2>&1
	rm "unique-$i.tar" "config-$i.json"
done
rm -f base.tar
cd "$ROOT"
total_mb=$((BASE_MB + N * UNIQUE_MB))
log "generated $N images ($BASE_MB MiB shared base + $UNIQUE_MB MiB unique each, $total_mb MiB distinct)"

go build -o "$PETRA" ./cmd/petra-oci
COSIGN_PASSWORD= "$COSIGN" generate-key-pair --output-key-prefix "$WORK/bundle" >/dev/null 2>&1
images=()
for i in $(seq 1 "$N"); do images+=(--image "$REG/bench/img-$i:v1"); done
COSIGN_PASSWORD= "$PETRA" -q pack --plain-http --sbom=false --key "$WORK/bundle.key" "${images[@]}" -o "$WORK/bundle" >"$WORK/logs/pack.log" 2>&1 ||
	{ tail -n 20 "$WORK/logs/pack.log" >&2; die "petra-oci pack failed"; }
stop "$REG_PID"

# --- servers ----------------------------------------------------------------------------
# start_serve: petra-oci serve on the bundle; sets SERVE_PID, SERVE_HOST and SERVE_START_S
# (verification until listening).
start_serve() {
	local t0 out=$WORK/logs/serve.out
	: >"$out"
	t0=$(date +%s.%N)
	"$PETRA" -q serve --addr 127.0.0.1:0 --key "$WORK/bundle.pub" --state "$WORK/series.json" "$WORK/bundle" >"$out" 2>>"$WORK/logs/serve.log" &
	SERVE_PID=$!
	PIDS+=("$SERVE_PID")
	for _ in $(seq 1 600); do
		if [ -s "$out" ]; then
			SERVE_HOST=$(sed -n 's#^http://##p' "$out" | head -n 1)
			SERVE_START_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
			return
		fi
		kill -0 "$SERVE_PID" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$WORK/logs/serve.log" >&2
	die "petra-oci serve did not start"
}

# pull KEY HOST: one crane pull of all images from HOST, timed; appends "wall rss" to times/KEY.
mkdir -p "$WORK/times"
pull() {
	local key=$1 host=$2 refs=() i dst
	for i in $(seq 1 "$N"); do refs+=("$host/bench/img-$i:v1"); done
	dst=$WORK/pull/$key
	rm -rf "$dst"
	"$TIME" -f '%e %M' -a -o "$WORK/times/$key" "$CRANE" pull --insecure --format oci "${refs[@]}" "$dst" >>"$WORK/logs/$key.log" 2>&1 ||
		{ tail -n 5 "$WORK/logs/$key.log" >&2; die "crane pull from $key failed"; }
	# every image arrived with its source digest
	for i in $(seq 1 "$N"); do
		[ -s "$dst/blobs/sha256/$("$CRANE" digest --insecure "$host/bench/img-$i:v1" | cut -d: -f2)" ] || die "$key: img-$i missing in the pulled layout"
	done
	rm -rf "$dst"
}

REG_PORT=$(free_port)
start_registry "$REG_PORT"
start_serve
log "distribution on 127.0.0.1:$REG_PORT, petra-oci serve on $SERVE_HOST (verified and listening in ${SERVE_START_S}s)"
serve_rss_start=$(hwm_kib "$SERVE_PID")
for r in $(seq 1 "$RUNS"); do
	if [ $((r % 2)) = 1 ]; then
		pull distribution "127.0.0.1:$REG_PORT"; pull serve "$SERVE_HOST"
	else
		pull serve "$SERVE_HOST"; pull distribution "127.0.0.1:$REG_PORT"
	fi
	log "run $r of $RUNS done"
done
reg_rss=$(hwm_kib "$REG_PID")
serve_rss=$(hwm_kib "$SERVE_PID")
tampered=$(grep -c 'changed on disk' "$WORK/logs/serve.log" || true)

best() { awk 'NR == 1 || $1 < w {w = $1} $2 > m {m = $2} END {printf "%.2f %d\n", w, m}' "$WORK/times/$1"; }
read -r reg_wall reg_crane < <(best distribution)
read -r serve_wall serve_crane < <(best serve)
mbps() { awk -v mb="$total_mb" -v s="$1" 'BEGIN {printf "%.0f", mb * 1.048576 / s}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

echo
echo "petra-oci serve bench: crane pull --format oci of $N images (${BASE_MB} MiB shared base + ${UNIQUE_MB} MiB unique each, $total_mb MiB distinct), fastest of $RUNS runs; $(nproc) cores"
echo "distribution $("$REGISTRY" --version 2>/dev/null | awk '{print $NF}'), crane $("$CRANE" version 2>/dev/null); serve verified the bundle and listened in ${SERVE_START_S}s (peak RSS then $(mib "$serve_rss_start") MiB)"
printf '%-13s %8s %8s %16s %17s\n' server "wall s" "MB/s" "crane RSS MiB" "server RSS MiB"
printf '%-13s %8s %8s %16s %17s\n' distribution "$reg_wall" "$(mbps "$reg_wall")" "$(mib "$reg_crane")" "$(mib "$reg_rss")"
printf '%-13s %8s %8s %16s %17s\n' petra-serve "$serve_wall" "$(mbps "$serve_wall")" "$(mib "$serve_crane")" "$(mib "$serve_rss")"
awk -v a="$reg_wall" -v b="$serve_wall" 'BEGIN {printf "serve / distribution throughput: %.2fx\n", a / b}'
echo "(server RSS = VmHWM after all pulls; blobs refused as changed during the bench: $tampered)"
