#!/usr/bin/env bash
# make bench-scale: how petra-oci grows with the size of the graph. A measurement, not a test.
#
# For each size in BENCH_SCALE_SIZES (images; default "200 2000"), starts a fresh
# distribution v3 registry on 127.0.0.1 (no referrers API: the referrers tag schema),
# seeds it with bench/mkscale (one Go program, not thousands of CLI calls): per image an
# index of two platform manifests (a shared base layer and a tiny unique one each), a
# cosign .sig (simple signing, ECDSA key) and .att (DSSE) on each of the three manifests
# and one OCI 1.1 referrer of the index, i.e. 10 manifests per image, BENCH_SCALE_PER_REPO
# (10) tags per repository. Then it times, with /usr/bin/time:
#
#   pack         petra-oci pack --sbom=false --key (copy only, no image policy)
#   pack-policy  petra-oci pack --sbom=false --key --image-key (every image's signatures
#                verified before its layers are copied; a signed verification summary
#                attached per image and child)
#   inspect      petra-oci inspect of the pack-policy bundle
#   verify       petra-oci verify --key of that bundle (signature, every file, the graph)
#   unpack       petra-oci unpack --key of that bundle into the same registry (new prefix)
#
# and prints the time per size and the growth factor time(largest)/time(smallest) per
# command next to what linear and n log n growth would be. Settings (environment):
# BENCH_SCALE_SIZES, BENCH_SCALE_PER_REPO, BENCH_KEEP (0; 1 keeps .bench/scale).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SIZES=${BENCH_SCALE_SIZES:-200 2000}
PER_REPO=${BENCH_SCALE_PER_REPO:-10}
KEEP=${BENCH_KEEP:-0}
TOOLS=$(go env GOPATH)/bin
REGISTRY=$TOOLS/registry
COSIGN=$TOOLS/cosign
PETRA=$ROOT/bin/petra-oci
TIME=/usr/bin/time
WORK=$ROOT/.bench/scale

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
[ -x "$TIME" ] || die "$TIME missing: run 'make tools' (Debian package 'time')"
[ -x "$REGISTRY" ] || die "$REGISTRY missing: run 'make tools'"
[ -x "$COSIGN" ] || die "$COSIGN missing: run 'make tools'"

REG_PID=
stop_registry() {
	if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
	REG_PID=
}
cleanup() {
	stop_registry
	if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; rmdir "$ROOT/.bench" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$WORK"
mkdir -p "$WORK"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# start_registry DIR: a distribution v3 registry storing under DIR; sets REG and REG_PID.
start_registry() { start_distribution "$1"; }

go build -o "$PETRA" ./cmd/petra-oci
go build -o "$WORK/mkscale" ./bench/mkscale
COSIGN_PASSWORD= "$COSIGN" generate-key-pair --output-key-prefix "$WORK/cosign" >/dev/null 2>&1
export COSIGN_PASSWORD=

# timed KEY CMD...: wall seconds and peak RSS KiB of CMD into $WORK/KEY.time
timed() {
	local key=$1
	shift
	if ! "$TIME" -f '%e %M' -o "$WORK/$key.time" "$@" >"$WORK/$key.log" 2>&1; then
		tail -n 5 "$WORK/$key.log" >&2
		die "$key failed: $*"
	fi
	cat "$WORK/$key.time"
}

STEPS=(pack pack-policy inspect verify unpack)
declare -A WALL RSS
for n in $SIZES; do
	d=$WORK/$n
	mkdir -p "$d"
	start_registry "$d"
	# each size its own audit log and replay state (XDG_STATE_HOME): every size runs
	# the same commands against the same state
	export XDG_STATE_HOME=$d/state
	log "$n images: seeding $REG (10 manifests per image, $PER_REPO tags per repository)"
	t0=$SECONDS
	"$WORK/mkscale" -registry "$REG" -n "$n" -per-repo "$PER_REPO" -key-out "$d/image-key.pub" -images-out "$d/images.yaml"
	log "$n images: seeded in $((SECONDS - t0))s"
	common=(--plain-http --sbom=false --key "$WORK/cosign.key" -f "$d/images.yaml")
	log "$n images: pack (copy only)"
	read -r WALL[pack,$n] RSS[pack,$n] < <(timed pack-$n "$PETRA" pack "${common[@]}" -o "$d/copy")
	log "$n images: pack --image-key"
	read -r WALL[pack-policy,$n] RSS[pack-policy,$n] < <(timed pack-policy-$n "$PETRA" pack "${common[@]}" --image-key "$d/image-key.pub" -o "$d/bundle")
	log "$n images: inspect"
	read -r WALL[inspect,$n] RSS[inspect,$n] < <(timed inspect-$n "$PETRA" inspect "$d/bundle")
	log "$n images: verify"
	read -r WALL[verify,$n] RSS[verify,$n] < <(timed verify-$n "$PETRA" verify --key "$WORK/cosign.pub" "$d/bundle")
	log "$n images: unpack"
	read -r WALL[unpack,$n] RSS[unpack,$n] < <(timed unpack-$n "$PETRA" unpack --plain-http --key "$WORK/cosign.pub" --state "$d/series.json" --to "$REG/restored" "$d/bundle")
	manifests=$(grep -c '"mediaType"' "$d/bundle/index.json" || true)
	log "$n images: bundle index.json $(stat -c %s "$d/bundle/index.json") bytes ($manifests entries), metadata.json $(stat -c %s "$d/bundle/petra/metadata.json") bytes, $(find "$d/bundle/blobs" -type f | wc -l) blobs"
	echo "$n $(stat -c %s "$d/bundle/index.json") $(stat -c %s "$d/bundle/petra/metadata.json") $(find "$d/bundle/blobs" -type f | wc -l)" >>"$WORK/sizes"
	stop_registry
	rm -rf "$d/registry" "$d/copy"
done

read -r -a ns <<<"$SIZES"
lo=${ns[0]}
hi=${ns[${#ns[@]}-1]}
echo
echo "petra-oci scale bench: 10 manifests per image (index + 2 platform manifests, .sig and .att on each, 1 referrer), $PER_REPO tags per repository, distribution $("$REGISTRY" --version 2>/dev/null | awk '{print $NF}') on loopback; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
while read -r n ib mb blobs; do
	echo "  $n images: index.json $((ib / 1024)) KiB (limit $((32 << 10)) KiB), metadata.json $((mb / 1024)) KiB (limit $((64 << 10)) KiB), $blobs blobs"
done <"$WORK/sizes"
lin=$(awk -v a="$lo" -v b="$hi" 'BEGIN {printf "%.1f", b / a}')
nlogn=$(awk -v a="$lo" -v b="$hi" 'BEGIN {printf "%.1f", b * log(b) / (a * log(a))}')
printf '%-12s' step
for n in "${ns[@]}"; do printf ' %12s' "${n} img s"; done
for n in "${ns[@]}"; do printf ' %10s' "${n} MiB"; done
printf ' %8s  %s\n' growth "(linear ${lin}x, n log n ${nlogn}x)"
for s in "${STEPS[@]}"; do
	printf '%-12s' "$s"
	for n in "${ns[@]}"; do printf ' %12s' "${WALL[$s,$n]}"; done
	for n in "${ns[@]}"; do printf ' %10s' "$(awk -v k="${RSS[$s,$n]}" 'BEGIN {printf "%.1f", k / 1024}')"; done
	g=$(awk -v a="${WALL[$s,$lo]}" -v b="${WALL[$s,$hi]}" 'BEGIN {if (a > 0) printf "%.1fx", b / a; else print "-"}')
	verdict=$(awk -v a="${WALL[$s,$lo]}" -v b="${WALL[$s,$hi]}" -v m="$nlogn" 'BEGIN {if (a > 0 && b / a > m) print "WORSE than n log n"; else print "ok"}')
	printf ' %8s  %s\n' "$g" "$verdict"
done
