#!/usr/bin/env bash
# make bench (transfer rows): petra-oci export / import against tar and split on the
# same bundle. A measurement, not a test.
#
# For each size in BENCH_TRANSFER_SIZES (MiB; default "256 2048"), writes a signed bundle
# of one image with 64 MiB pseudo-random layers (bench/mkbundle), then measures wall time
# and peak RSS (/usr/bin/time) of:
#
#   export:  tar -cf - -C DIR . | split -b SPLIT        vs  petra-oci export --split SPLIT --key
#            (and petra-oci export --split SPLIT --verify-files, and --parity 2, reported
#            beside it)
#   import:  cat chunks | tar -xf - -C OUT                vs  petra-oci import CHUNKS -o OUT --key
#            (chunk index signature, every chunk hashed, strict extraction, then the full
#            bundle verification of petra-oci verify)
#
# and prints petra-oci / baseline ratios, after a row with the fixed cost of a split
# export (a 1 MiB bundle: the cosign key's scrypt KDF and the index signature). Every file is read once before the timed runs,
# so all of them start from a warm page cache, and sync runs before each, so none pays
# for the write-back of another. The commands take turns for BENCH_REPEAT rounds and each
# row is the median wall time (and the highest peak RSS). Settings: BENCH_TRANSFER_SIZES,
# BENCH_SPLIT (256M), BENCH_REPEAT (5), BENCH_KEEP (0; 1 keeps .bench/transfer).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZES=${BENCH_TRANSFER_SIZES:-256 2048}
SPLIT=${BENCH_SPLIT:-256M}
KEEP=${BENCH_KEEP:-0}
REPEAT=${BENCH_REPEAT:-5}
TOOLS=$(go env GOPATH)/bin
COSIGN=$TOOLS/cosign
PETRA=$ROOT/bin/petra-oci
TIME=/usr/bin/time
WORK=$ROOT/.bench/transfer

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
[ -x "$TIME" ] || die "$TIME missing: run 'make tools' (Debian package 'time')"
[ -x "$COSIGN" ] || die "$COSIGN missing: run 'make tools'"
cleanup() { if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; rmdir "$ROOT/.bench" 2>/dev/null || true; fi; }
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK"
go build -o "$PETRA" ./cmd/petra-oci
go build -o "$WORK/mkbundle" ./bench/mkbundle
COSIGN_PASSWORD= "$COSIGN" generate-key-pair --output-key-prefix "$WORK/cosign" >/dev/null 2>&1
export COSIGN_PASSWORD=

# timed KEY CMD...: wall seconds and peak RSS KiB of CMD into $WORK/KEY.time
timed() {
	local key=$1
	shift
	sync # write back what the previous run left dirty, so no run pays for another's
	if ! "$TIME" -f '%e %M' -o "$WORK/$key.time" "$@" >"$WORK/$key.log" 2>&1; then
		tail -n 5 "$WORK/$key.log" >&2
		die "$key failed: $*"
	fi
	cat "$WORK/$key.time"
}
warm() { find "$@" -type f -exec cat {} + >/dev/null; }

# the fixed cost of a split export, whatever the bundle size: decrypting the cosign key
# (scrypt, N=65536 r=8: about 0.25 s of CPU and 32 MiB; it runs beside the archive
# write, so it adds to the wall time only of small bundles) and signing the chunk index
mkdir -p "$WORK/fixed"
"$WORK/mkbundle" -o "$WORK/fixed/bundle" -key "$WORK/cosign.key" -mb 1
read -r fw fr < <(timed export-fixed "$PETRA" export "$WORK/fixed/bundle" -o "$WORK/fixed/chunks" --split "$SPLIT" --key "$WORK/cosign.key")
rm -rf "$WORK/fixed"

# median of the numbers given
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -n 1; }

# run KEY CMD...: one timed run of CMD, appended to the lists W_KEY (wall) and R_KEY (RSS)
declare -A W R
run() {
	local key=$1 w r
	shift
	read -r w r < <(timed "$key" "$@")
	W[$key]="${W[$key]:-} $w"
	R[$key]="${R[$key]:-} $r"
}

ROWS=()
for mb in $SIZES; do
	d=$WORK/$mb
	mkdir -p "$d"
	log "$mb MiB: writing the bundle"
	"$WORK/mkbundle" -o "$d/bundle" -key "$WORK/cosign.key" -mb "$mb"
	W=() R=()
	# the commands take turns, round after round, so a slow spell of the machine
	# (page-cache reclaim, the host) falls on all of them alike; each row is a median
	for round in $(seq "$REPEAT"); do
		log "$mb MiB: round $round of $REPEAT"
		warm "$d/bundle"
		mkdir "$d/split"
		run tarsplit bash -c "tar -cf - -C '$d/bundle' . | split -b $SPLIT - '$d/split/part-'"
		rm -rf "$d/chunks"
		run export "$PETRA" export "$d/bundle" -o "$d/chunks" --split "$SPLIT" --key "$WORK/cosign.key"
		run exportv "$PETRA" export "$d/bundle" -o "$d/chunksv" --split "$SPLIT" --verify-files --key "$WORK/cosign.key"
		rm -rf "$d/chunksv"
		run exportp "$PETRA" export "$d/bundle" -o "$d/chunksp" --split "$SPLIT" --parity 2 --key "$WORK/cosign.key"
		rm -rf "$d/chunksp"

		warm "$d/split" "$d/chunks"
		mkdir "$d/untar"
		run untar bash -c "cat '$d'/split/part-* | tar -xf - -C '$d/untar'"
		rm -rf "$d/untar" "$d/split"
		rm -f "$WORK/series.json"
		run import "$PETRA" import "$d/chunks" -o "$d/imported" --key "$WORK/cosign.pub" --state "$WORK/series.json"
		"$PETRA" verify --key "$WORK/cosign.pub" --state "$WORK/series.json" "$d/imported" >/dev/null || die "the imported bundle does not verify"
		rm -rf "$d/imported"
	done
	row="$mb"
	for k in tarsplit export exportv exportp untar import; do
		# shellcheck disable=SC2086 # the lists are words
		row="$row|$(median ${W[$k]})|$(maxof ${R[$k]})"
	done
	ROWS+=("$row")
	rm -rf "$d"
done

echo
echo "petra-oci transfer bench: bundles of one image with 64 MiB random layers, split $SPLIT, $(nproc) cores, warm page cache; median wall of $REPEAT rounds, highest RSS"
printf '%-8s %-38s %8s %13s %s\n' MiB command "wall s" "peak RSS MiB" "ratio to baseline"
printf '%-8s %-38s %8s %13s %s\n' 1 "petra-oci export --split (fixed)" "$fw" "$(awk -v k="$fr" 'BEGIN {printf "%.1f", k / 1024}')" "startup, key KDF (beside the write in larger rows), index signature"
for row in "${ROWS[@]}"; do
	IFS='|' read -r mb tw tr ew er vw vr pw pr xw xr iw ir <<<"$row"
	mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "-"}'; }
	printf '%-8s %-38s %8s %13s %s\n' "$mb" "tar -cf - | split -b" "$tw" "$(mib "$tr")" ""
	printf '%-8s %-38s %8s %13s %s\n' "$mb" "petra-oci export --split" "$ew" "$(mib "$er")" "$(ratio "$ew" "$tw") (limit 1.2x)"
	printf '%-8s %-38s %8s %13s %s\n' "$mb" "petra-oci export --split --verify-files" "$vw" "$(mib "$vr")" "$(ratio "$vw" "$tw")"
	printf '%-8s %-38s %8s %13s %s\n' "$mb" "petra-oci export --split --parity 2" "$pw" "$(mib "$pr")" "$(ratio "$pw" "$tw")"
	printf '%-8s %-38s %8s %13s %s\n' "$mb" "cat chunks | tar -x" "$xw" "$(mib "$xr")" ""
	printf '%-8s %-38s %8s %13s %s\n' "$mb" "petra-oci import (all verification)" "$iw" "$(mib "$ir")" "$(ratio "$iw" "$xw") (limit 1.5x)"
done
