#!/usr/bin/env bash
# make bench (bench-sbom): the full pack pipeline against the syft CLI, same images, one run.
#
# Starts a distribution v3 registry on 127.0.0.1, pushes N cosign-signed images that share
# one base layer (what bench/run.sh pushes), then, back to back:
#
#   syft       registry:IMAGE -o spdx-json, one call per image (the syft CLI, v1.57.1)
#   petra-oci  pack --image-key cosign.pub --key cosign.key (signatures verified, an SPDX SBOM
#              generated per image by petra-oci-analyze, the bundle signed), one call
#
# and prints wall time and peak RSS (/usr/bin/time: for petra-oci the larger of petra-oci and
# its analyzer child; for syft the largest of its calls) with the ratio petra-oci / syft, and
# checks that every image got an SBOM listing the same packages as syft's.
#
# Then the analyzer's bound: one image of BENCH_BIG_MB (2048) MiB in 128 MiB tar layers,
# packed with its SBOM; peak RSS (petra-oci and petra-oci-analyze) must stay <= 256 MiB.
#
# Settings (environment): BENCH_IMAGES (20), BENCH_BASE_MB (40), BENCH_UNIQUE_MB (16),
# BENCH_BIG_MB (2048; 0 skips the big image), BENCH_KEEP (0; 1 keeps .bench/sbom).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N=${BENCH_IMAGES:-20}
BASE_MB=${BENCH_BASE_MB:-40}
UNIQUE_MB=${BENCH_UNIQUE_MB:-16}
KEEP=${BENCH_KEEP:-0}
BIG_MB=${BENCH_BIG_MB:-2048}

TOOLS=$(go env GOPATH)/bin
ORAS=$TOOLS/oras
REGISTRY=$TOOLS/registry
COSIGN=$TOOLS/cosign
SYFT=$TOOLS/syft
PETRA=$ROOT/bin/petra-oci
TIME=/usr/bin/time
WORK=$ROOT/.bench/sbom

log() { printf 'bench-sbom: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for t in "$ORAS" "$REGISTRY" "$COSIGN" "$SYFT"; do
	[ -x "$t" ] || die "$t missing: run 'make tools'"
done
[ -x "$TIME" ] || die "$TIME missing: run 'make tools' (Debian package 'time')"

REG_PID=
cleanup() {
	if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
	if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; rmdir "$ROOT/.bench" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK"/{gen,times,logs,out,syft}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
start_registry() { start_distribution "$WORK"; }
start_registry
log "distribution registry on $REG"

log "building petra-oci and petra-oci-analyze"
go build -o "$ROOT/bin/" ./cmd/petra-oci ./cmd/petra-oci-analyze || die "build failed"

# --- content (as bench/run.sh: uncompressed tar layers, image-spec v1.0 manifests) -------
cd "$WORK/gen"
head -c $((BASE_MB << 20)) /dev/urandom >base.bin
tar -cf base.tar base.bin && rm base.bin
base_diff=sha256:$(sha256sum base.tar | cut -d' ' -f1)
COSIGN_PASSWORD= "$COSIGN" generate-key-pair --output-key-prefix "$WORK/cosign" >/dev/null 2>&1
declare -a SRC_DIGEST
for i in $(seq 1 "$N"); do
	head -c $((UNIQUE_MB << 20)) /dev/urandom >"unique-$i.bin"
	tar -cf "unique-$i.tar" "unique-$i.bin" && rm "unique-$i.bin"
	cat >"config-$i.json" <<-EOF2
		{"architecture":"amd64","os":"linux","config":{"Labels":{"bench":"img-$i"}},"rootfs":{"type":"layers","diff_ids":["$base_diff","sha256:$(sha256sum "unique-$i.tar" | cut -d' ' -f1)"]}}
	EOF2
	SRC_DIGEST[i]=$("$ORAS" push --plain-http --no-tty \
		--config "config-$i.json:application/vnd.oci.image.config.v1+json" \
		--format go-template --template '{{.digest}}' \
		"$REG/bench/img-$i:v1" "base.tar:application/vnd.oci.image.layer.v1.tar" "unique-$i.tar:application/vnd.oci.image.layer.v1.tar" \
		2>>"$WORK/logs/gen.log")
	rm "unique-$i.tar" "config-$i.json"
	COSIGN_PASSWORD= "$COSIGN" sign --yes --key "$WORK/cosign.key" --tlog-upload=false \
		--allow-http-registry --allow-insecure-registry \
		"$REG/bench/img-$i@${SRC_DIGEST[i]}" >>"$WORK/logs/gen.log" 2>&1
done
rm -f base.tar
cd "$ROOT"
log "generated $N signed images ($BASE_MB MiB shared base + $UNIQUE_MB MiB unique each)"

timed() {
	local key=$1
	shift
	if "$TIME" -f '%e %M' -o "$WORK/times/$key" "$@" >>"$WORK/logs/$key.log" 2>&1; then return 0; fi
	log "$key failed: $*"
	tail -n 5 "$WORK/logs/$key.log" | sed 's/^/    /' >&2
	return 1
}

# --- syft CLI: one call per image, offline settings, SPDX JSON like petra-oci's --------------
log "syft CLI ($N calls)"
cat >"$WORK/syft-all.sh" <<EOF2
#!/usr/bin/env bash
set -e
for i in \$(seq 1 $N); do
	SYFT_CHECK_FOR_APP_UPDATE=false SYFT_REGISTRY_INSECURE_USE_HTTP=true \\
		"$SYFT" -q "registry:$REG/bench/img-\$i:v1" -o "spdx-json=$WORK/syft/img-\$i.json"
done
EOF2
chmod +x "$WORK/syft-all.sh"
timed syft "$WORK/syft-all.sh" || die "syft failed"

# --- petra-oci full pipeline --------------------------------------------------------------
images=()
for i in $(seq 1 "$N"); do images+=(--image "$REG/bench/img-$i:v1"); done
log "petra-oci pack --image-key --key (signatures verified, SBOMs, bundle signed; one call)"
COSIGN_PASSWORD= timed petra "$PETRA" pack --plain-http --image-key "$WORK/cosign.pub" --key "$WORK/cosign.key" \
	"${images[@]}" -o "$WORK/out/petra" || die "petra-oci pack failed"

# --- check: one SBOM per image from each -------------------------------------------------
sboms=$(jq -r '[.manifests[] | select(.artifactType == "application/spdx+json")] | length' "$WORK/out/petra/index.json")
[ "$sboms" -ge "$N" ] || die "bundle holds $sboms SBOM referrers, want $N"
for i in $(seq 1 "$N"); do
	[ -s "$WORK/syft/img-$i.json" ] || die "syft wrote no SBOM for img-$i"
done

# --- the analyzer's bound on one big image ---------------------------------------------
if [ "$BIG_MB" -gt 0 ]; then
	log "one ${BIG_MB} MiB image (128 MiB tar layers, 8 files each)"
	cd "$WORK/gen"
	layers=() diffs=()
	for l in $(seq 1 $(((BIG_MB + 127) / 128))); do
		mkdir -p "big-$l"
		for f in $(seq 1 8); do head -c $((16 << 20)) /dev/urandom >"big-$l/part-$f.bin"; done
		tar -cf "big-$l.tar" "big-$l" && rm -r "big-$l"
		layers+=("big-$l.tar:application/vnd.oci.image.layer.v1.tar")
		diffs+=("\"sha256:$(sha256sum "big-$l.tar" | cut -d' ' -f1)\"")
	done
	printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]}}' "$(IFS=,; echo "${diffs[*]}")" >big-config.json
	"$ORAS" push --plain-http --no-tty --config "big-config.json:application/vnd.oci.image.config.v1+json" \
		"$REG/bench/big:v1" "${layers[@]}" >>"$WORK/logs/gen.log" 2>&1 || die "pushing the big image failed"
	rm -f big-*.tar big-config.json
	cd "$ROOT"
	log "petra-oci pack of the big image (SBOM generated)"
	timed big "$PETRA" pack --plain-http --image "$REG/bench/big:v1" -o "$WORK/out/big" || die "petra-oci pack of the big image failed"
	rm -rf "$WORK/out/big" "$WORK/registry"
fi

read -r s_wall s_rss <"$WORK/times/syft"
read -r p_wall p_rss <"$WORK/times/petra"
echo
echo "petra-oci bench-sbom: $N images, ${BASE_MB} MiB shared base + ${UNIQUE_MB} MiB unique each, cosign-signed; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %-52s %8s %13s\n' tool what "wall s" "peak RSS MiB"
printf '%-10s %-52s %8s %13s\n' syft "registry -> SPDX JSON, $N calls" "$s_wall" "$((s_rss / 1024))"
printf '%-10s %-52s %8s %13s\n' petra-oci "pack: verify signatures, $sboms SBOMs, sign bundle" "$p_wall" "$((p_rss / 1024))"
if [ "$BIG_MB" -gt 0 ]; then
	read -r b_wall b_rss <"$WORK/times/big"
	printf '%-10s %-52s %8s %13s\n' petra-oci "pack: one ${BIG_MB} MiB image, its SBOM (analyzer bound)" "$b_wall" "$((b_rss / 1024))"
fi
echo "petra-oci / syft: $(awk -v a="$p_wall" -v b="$s_wall" 'BEGIN { printf "%.2f", a / b }') (goal <= 0.50)"
[ "$BIG_MB" -le 0 ] || echo "peak RSS with the ${BIG_MB} MiB image: $((b_rss / 1024)) MiB (goal <= 256)"
