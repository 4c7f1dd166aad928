#!/usr/bin/env bash
# make bench: a measurement, not a test.
#
# Starts a distribution v3 registry on 127.0.0.1 (no referrers API, so every tool uses the
# referrers tag schema), pushes N generated images that share one base layer, attaches one
# OCI 1.1 referrer to each and cosign-signs each (when cosign is installed), then moves the
# same content registry -> OCI layout -> registry with petra-oci and with its peers:
#
#   petra-oci  pack (all images, one call)       / unpack (one call)
#   oras       backup --include-referrers        / restore   (one call per repository:
#              each repository into its own layout, all tags, so the cosign tags come too)
#   regctl     image copy --referrers --digest-tags (one call per image, one shared ocidir)
#
# and prints wall time and peak RSS (/usr/bin/time) of each, with petra-oci's ratio to the
# fastest peer per direction. Each tool restores into its own repository prefix, and the
# "check" column counts images whose tag, referrer and signature arrived with the source digest.
#
# Settings (environment): BENCH_IMAGES (20), BENCH_BASE_MB (40), BENCH_UNIQUE_MB (16),
# BENCH_SIGN (auto: sign when cosign is installed; 0 or 1), BENCH_RUNS (1; with more, each
# tool's fastest run is reported), BENCH_KEEP (0; 1 keeps .bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N=${BENCH_IMAGES:-20}
BASE_MB=${BENCH_BASE_MB:-40}
UNIQUE_MB=${BENCH_UNIQUE_MB:-16}
SIGN=${BENCH_SIGN:-auto}
KEEP=${BENCH_KEEP:-0}
RUNS=${BENCH_RUNS:-1}

TOOLS=$(go env GOPATH)/bin
ORAS=$TOOLS/oras
REGCTL=$TOOLS/regctl
REGISTRY=$TOOLS/registry
COSIGN=$TOOLS/cosign
PETRA=$ROOT/bin/petra-oci
TIME=/usr/bin/time
WORK=$ROOT/.bench/run # bench/verify.sh uses .bench/verify

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for t in "$ORAS" "$REGCTL" "$REGISTRY"; do
	[ -x "$t" ] || die "$t missing: run 'make tools'"
done
[ -x "$TIME" ] || die "$TIME missing: run 'make tools' (Debian package 'time')"
case $SIGN in
auto) if [ -x "$COSIGN" ]; then SIGN=1; else SIGN=0; log "cosign not installed: images are not signed"; fi ;;
1) [ -x "$COSIGN" ] || die "BENCH_SIGN=1 but $COSIGN is missing" ;;
0) ;;
*) die "BENCH_SIGN must be auto, 0 or 1" ;;
esac

REG_PID=
cleanup() {
	if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
	if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; rmdir "$ROOT/.bench" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK"/{gen,times,logs,out}

# --- registry ---------------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_registry() {
	local try port
	for try in $(seq 1 20); do
		port=$((20000 + RANDOM % 40000))
		port_busy "$port" && continue
		cat >"$WORK/registry.yml" <<-EOF
			version: 0.1
			log:
			  level: error
			  accesslog:
			    disabled: true
			storage:
			  filesystem:
			    rootdirectory: $WORK/registry
			  cache:
			    blobdescriptor: inmemory
			  delete:
			    enabled: true
			http:
			  addr: 127.0.0.1:$port
		EOF
		OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true \
			"$REGISTRY" serve "$WORK/registry.yml" >"$WORK/logs/registry.log" 2>&1 &
		REG_PID=$!
		for _ in $(seq 1 100); do
			kill -0 "$REG_PID" 2>/dev/null || break
			if port_busy "$port"; then REG=127.0.0.1:$port; return; fi
			sleep 0.1
		done
		kill "$REG_PID" 2>/dev/null || true
		wait "$REG_PID" 2>/dev/null || true
		REG_PID=
	done
	cat "$WORK/logs/registry.log" >&2
	die "could not start the registry"
}
start_registry
log "distribution registry on $REG (storage $WORK/registry)"

RC=(--host "reg=$REG,tls=disabled")

# --- content ----------------------------------------------------------------------------
# Valid OCI images: uncompressed tar layers (random bytes do not compress), a config whose
# diff_ids match, pushed with oras as image-spec v1.0 manifests.
declare -a SRC_DIGEST
gen_t0=$SECONDS
cd "$WORK/gen"
head -c $((BASE_MB << 20)) /dev/urandom >base.bin
tar -cf base.tar base.bin && rm base.bin
base_diff=sha256:$(sha256sum base.tar | cut -d' ' -f1)
echo "bench referrer" >note.txt
# One cosign key pair (empty password) signs the images and petra-oci's bundle.
if [ -x "$COSIGN" ]; then
	COSIGN_PASSWORD= "$COSIGN" generate-key-pair --output-key-prefix "$WORK/cosign" >/dev/null 2>&1
fi
for i in $(seq 1 "$N"); do
	head -c $((UNIQUE_MB << 20)) /dev/urandom >"unique-$i.bin"
	tar -cf "unique-$i.tar" "unique-$i.bin" && rm "unique-$i.bin"
	cat >"config-$i.json" <<-EOF
		{"architecture":"amd64","os":"linux","config":{"Labels":{"bench":"img-$i"}},"rootfs":{"type":"layers","diff_ids":["$base_diff","sha256:$(sha256sum "unique-$i.tar" | cut -d' ' -f1)"]}}
	EOF
	ref=$REG/bench/img-$i:v1
	SRC_DIGEST[i]=$("$ORAS" push --plain-http --no-tty \
		--config "config-$i.json:application/vnd.oci.image.config.v1+json" \
		--format go-template --template '{{.digest}}' \
		"$ref" "base.tar:application/vnd.oci.image.layer.v1.tar" "unique-$i.tar:application/vnd.oci.image.layer.v1.tar" \
		2>>"$WORK/logs/gen.log")
	rm "unique-$i.tar" "config-$i.json"
	"$ORAS" attach --plain-http --no-tty --artifact-type application/vnd.petra.bench.note \
		"$REG/bench/img-$i@${SRC_DIGEST[i]}" note.txt >>"$WORK/logs/gen.log" 2>&1
	if [ "$SIGN" = 1 ]; then
		COSIGN_PASSWORD= "$COSIGN" sign --yes --key "$WORK/cosign.key" --tlog-upload=false \
			--allow-http-registry --allow-insecure-registry \
			"$REG/bench/img-$i@${SRC_DIGEST[i]}" >>"$WORK/logs/gen.log" 2>&1
	fi
done
rm -f base.tar
cd "$ROOT"
total_mb=$((BASE_MB + N * UNIQUE_MB))
log "generated $N images ($BASE_MB MiB shared base + $UNIQUE_MB MiB unique each: $((N * (BASE_MB + UNIQUE_MB))) MiB referenced, $total_mb MiB distinct), one referrer each, signed=$SIGN, in $((SECONDS - gen_t0))s"

# --- measuring --------------------------------------------------------------------------
# timed KEY CMD...: run CMD under /usr/bin/time, append "wall_s peak_rss_kib" to times/KEY.
timed() {
	local key=$1
	shift
	if "$TIME" -f '%e %M' -a -o "$WORK/times/$key" "$@" >>"$WORK/logs/$key.log" 2>&1; then return 0; fi
	log "$key failed: $*"
	tail -n 5 "$WORK/logs/$key.log" | sed 's/^/    /' >&2
	return 1
}

# check PREFIX: how many images arrived under REG/PREFIX with the source digest, a referrer
# and (when signed) the cosign signature tag.
check() {
	local prefix=$1 ok=0 i repo d refs tags
	for i in $(seq 1 "$N"); do
		repo=$REG/$prefix/bench/img-$i
		d=$("$REGCTL" "${RC[@]}" image digest "$repo:v1" 2>/dev/null) || continue
		[ "$d" = "${SRC_DIGEST[i]}" ] || continue
		refs=$("$REGCTL" "${RC[@]}" artifact list "$repo@$d" --format '{{len .Descriptors}}' 2>/dev/null) || continue
		[ "${refs:-0}" -ge 1 ] || continue
		if [ "$SIGN" = 1 ]; then
			tags=$("$REGCTL" "${RC[@]}" tag ls "$repo" 2>/dev/null) || continue
			grep -qx "sha256-${d#sha256:}.sig" <<<"$tags" || continue
		fi
		ok=$((ok + 1))
	done
	echo "$ok/$N"
}

ROWS=() # "tool|direction|calls|wall|rss_kib|status", one per run
record() { # record TOOL DIRECTION KEY CALLS STATUS
	local wall=- rss=-
	if [ "${5%% *}" = ok ] && [ -s "$WORK/times/$3" ]; then
		read -r wall rss < <(awk '{w += $1; if ($2 > m) m = $2} END {printf "%.2f %d\n", w, m}' "$WORK/times/$3")
	fi
	ROWS+=("$1|$2|$4|$wall|$rss|$5")
}

run_loop() { # run_loop FUNCTION: call FUNCTION i for every image i
	local fn=$1 i
	for i in $(seq 1 "$N"); do
		$fn "$i" || return 1
	done
}

PACK="registry->layout"
UNPACK="layout->registry"

# petra-oci
petra_ok=1
if ! go build -o "$PETRA" ./cmd/petra-oci 2>"$WORK/logs/petra-build.log"; then
	log "petra-oci does not build:"
	tail -n 5 "$WORK/logs/petra-build.log" | sed 's/^/    /' >&2
	petra_ok=0
fi
# petra-oci signs the bundle at pack and verifies it (signature, then every file) before
# unpack pushes; that is part of its job, so it is measured. Without cosign there is no key:
# then the bundle is unsigned and unpack runs with --unsafe-skip-verify.
if [ -f "$WORK/cosign.key" ]; then
	PETRA_SIGN=(--key "$WORK/cosign.key")
	PETRA_VERIFY=(--key "$WORK/cosign.pub" --state "$WORK/petra-series.json")
else
	PETRA_SIGN=()
	PETRA_VERIFY=(--unsafe-skip-verify)
	log "no cosign key: petra-oci packs an unsigned bundle and unpacks it with --unsafe-skip-verify"
fi
# run_tools R: one measurement of every tool; run R writes to its own layouts and
# destination prefixes (restoredR-TOOL), so no run finds the work of another done.
run_tools() {
	local r=$1 i
	if [ "$petra_ok" = 1 ]; then
		images=()
		for i in $(seq 1 "$N"); do images+=(--image "$REG/bench/img-$i:v1"); done
		log "petra-oci pack ($N images, one call)"
		if COSIGN_PASSWORD= timed petra-pack$r "$PETRA" pack --plain-http --sbom=false "${PETRA_SIGN[@]}" "${images[@]}" -o "$WORK/out/petra$r"; then
			record petra-oci "$PACK" petra-pack$r 1 ok
			log "petra-oci unpack (one call)"
			if timed petra-unpack$r "$PETRA" unpack --to "$REG/restored$r-petra" --plain-http "${PETRA_VERIFY[@]}" "$WORK/out/petra$r"; then
				record petra-oci "$UNPACK" petra-unpack$r 1 "ok $(check restored$r-petra)"
			else record petra-oci "$UNPACK" petra-unpack$r 1 failed; fi
		else
			record petra-oci "$PACK" petra-pack$r 1 failed
			record petra-oci "$UNPACK" petra-unpack$r 1 failed
		fi
	else
		record petra-oci "$PACK" petra-pack$r 1 failed
		record petra-oci "$UNPACK" petra-unpack$r 1 failed
	fi

	# oras backup/restore: one repository per call, so one layout per repository.
	oras_backup() { timed oras-backup$r "$ORAS" backup --plain-http --no-tty --include-referrers -o "$WORK/out/oras$r/img-$1" "$REG/bench/img-$1"; }
	oras_restore() { timed oras-restore$r "$ORAS" restore --plain-http --no-tty --input "$WORK/out/oras$r/img-$1" "$REG/restored$r-oras/bench/img-$1"; }
	log "oras backup ($N calls, one per repository, all tags)"
	if run_loop oras_backup; then
		record oras "$PACK" oras-backup$r "$N" ok
		log "oras restore ($N calls)"
		if run_loop oras_restore; then
			record oras "$UNPACK" oras-restore$r "$N" "ok $(check restored$r-oras)"
		else record oras "$UNPACK" oras-restore$r "$N" failed; fi
	else
		record oras "$PACK" oras-backup$r "$N" failed
		record oras "$UNPACK" oras-restore$r "$N" failed
	fi

	# regctl image copy: one call per image, all into one shared ocidir (tag img-N).
	regctl_pack() { timed regctl-pack$r "$REGCTL" "${RC[@]}" image copy --referrers --digest-tags "$REG/bench/img-$1:v1" "ocidir://$WORK/out/regctl$r:img-$1"; }
	regctl_unpack() { timed regctl-unpack$r "$REGCTL" "${RC[@]}" image copy --referrers --digest-tags "ocidir://$WORK/out/regctl$r:img-$1" "$REG/restored$r-regctl/bench/img-$1:v1"; }
	log "regctl image copy --referrers --digest-tags to ocidir ($N calls, one per image)"
	if run_loop regctl_pack; then
		record regctl "$PACK" regctl-pack$r "$N" ok
		log "regctl image copy --referrers --digest-tags from ocidir ($N calls)"
		if run_loop regctl_unpack; then
			record regctl "$UNPACK" regctl-unpack$r "$N" "ok $(check restored$r-regctl)"
		else record regctl "$UNPACK" regctl-unpack$r "$N" failed; fi
	else
		record regctl "$PACK" regctl-pack$r "$N" failed
		record regctl "$UNPACK" regctl-unpack$r "$N" failed
	fi
}

for r in $(seq 1 "$RUNS"); do
	[ "$RUNS" = 1 ] || log "run $r of $RUNS"
	run_tools "$r"
done

# One row per tool and direction: the fastest run's wall time, the largest peak RSS of any
# run, and failed if any run failed.
mapfile -t ROWS < <(printf '%s\n' "${ROWS[@]}" | awk -F'|' -v OFS='|' '
	{ k = $1 "|" $2 }
	!(k in seen) { seen[k] = 1; order[++n] = k; calls[k] = $3; wall[k] = "-"; rss[k] = 0; st[k] = $6 }
	$6 == "failed" { st[k] = "failed" }
	st[k] != "failed" { st[k] = $6; if (wall[k] == "-" || $4 + 0 < wall[k] + 0) wall[k] = $4; if ($5 + 0 > rss[k]) rss[k] = $5 }
	END { for (i = 1; i <= n; i++) { k = order[i]; if (st[k] == "failed") { wall[k] = "-"; rss[k] = "-" }; print k, calls[k], wall[k], rss[k], st[k] } }')

# --- report -----------------------------------------------------------------------------
layout_mb() { [ -d "$1" ] && du -sm "$1" | cut -f1 || echo -; }
echo
echo "petra-oci bench: $N images, ${BASE_MB} MiB shared base + ${UNIQUE_MB} MiB unique layer each ($((N * (BASE_MB + UNIQUE_MB))) MiB referenced, $total_mb MiB distinct), 1 referrer each, cosign-signed=$SIGN"
echo "registry: distribution $("$REGISTRY" --version 2>/dev/null | awk '{print $NF}') on $REG (referrers tag schema); $(nproc) cores"
echo "layouts on disk (MiB): petra-oci $(layout_mb "$WORK/out/petra1"), oras $(layout_mb "$WORK/out/oras1") (one per repository), regctl $(layout_mb "$WORK/out/regctl1")"
echo "check = images whose v1 tag, referrer and signature reached the destination with the source digest"
echo
printf '%-10s %-17s %5s %9s %13s %-10s %s\n' tool direction calls "wall s" "peak RSS MiB" check "petra-oci / fastest peer"
for dir in "$PACK" "$UNPACK"; do
	best=
	for row in "${ROWS[@]}"; do
		IFS='|' read -r tool d calls wall rss status <<<"$row"
		[ "$d" = "$dir" ] && [ "$tool" != petra-oci ] && [ "$wall" != - ] || continue
		if [ -z "$best" ] || awk -v a="$wall" -v b="${best#*:}" 'BEGIN {exit !(a < b)}'; then best=$tool:$wall; fi
	done
	for row in "${ROWS[@]}"; do
		IFS='|' read -r tool d calls wall rss status <<<"$row"
		[ "$d" = "$dir" ] || continue
		ratio=
		if [ "$tool" = petra-oci ]; then
			if [ "$wall" = - ]; then ratio="petra-oci: failed"
			elif [ -n "$best" ]; then ratio=$(awk -v a="$wall" -v b="${best#*:}" -v n="${best%%:*}" 'BEGIN {if (b > 0) printf "%.2fx %s", a / b, n; else printf "- (%s took 0s)", n}')
			fi
		fi
		[ "$rss" = - ] || rss=$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')
		printf '%-10s %-17s %5s %9s %13s %-10s %s\n' "$tool" "$d" "$calls" "$wall" "$rss" "${status#ok }" "$ratio"
	done
done
echo "(looped tools: wall = sum over calls, peak RSS = largest single call; $RUNS run(s): fastest wall, largest RSS)"
