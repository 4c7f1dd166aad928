#!/usr/bin/env bash
# make bench: a measurement, not a test.
#
# Starts a distribution v3 registry on 127.0.0.1 (no referrers API, so every tool uses the
# referrers tag schema), pushes N generated images that share one base layer, attaches one
# OCI 1.1 referrer to each and cosign-signs each (when cosign is installed), then moves the
# same content registry -> OCI layout -> registry with petra-oci and with its peers, back to
# back in one run:
#
#   petra-oci  pack --sbom=false, no key, no policy (copy only; all images, one call)
#              pack --sbom=false --image-key --key (every image's signature verified, the
#                   bundle signed; one call)                 / unpack --key (verifies first)
#   oras       copy -r --to-oci-layout (one call per image, one shared layout)
#                                                            / copy -r --from-oci-layout
#              backup --include-referrers (one call per repository, all tags, so the cosign
#                   tags come too)                           / restore
#   regctl     image copy --referrers --digest-tags (one call per image, one shared ocidir)
#
# then `petra-oci verify` of the signed bundle against `openssl dgst -sha256` of the same
# files on both cores (many files), and, with BENCH_HUGE_MB > 0, one image of a single
# BENCH_HUGE_MB layer: copy-only pack, verify against openssl on one core (one huge file),
# and unpack, so the peak RSS figures can be compared across bundle sizes.
#
# It prints wall time and peak RSS (/usr/bin/time) of each, petra-oci's ratio to the peer
# per step, and the issue-13 goals with the figures that meet or miss them. Each tool
# restores into its own repository prefix, and the "check" column counts images whose tag,
# referrer and signature arrived with the source digest (oras copy -r does not copy the
# cosign signature tags, so its check counts tag and referrer only).
#
# Settings (environment): BENCH_IMAGES (20), BENCH_BASE_MB (40), BENCH_UNIQUE_MB (16),
# BENCH_HUGE_MB (512; 0 skips the huge image), BENCH_SIGN (auto: sign when cosign is
# installed; 0 or 1), BENCH_RUNS (1; with more, each tool's fastest run is reported),
# BENCH_KEEP (0; 1 keeps .bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

N=${BENCH_IMAGES:-20}
BASE_MB=${BENCH_BASE_MB:-40}
UNIQUE_MB=${BENCH_UNIQUE_MB:-16}
HUGE_MB=${BENCH_HUGE_MB:-512}
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
# petra-oci's audit trail goes with the bench, not into the user's state
export PETRA_AUDIT_LOG=$WORK/audit.log

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for t in "$ORAS" "$REGCTL" "$REGISTRY"; do
	[ -x "$t" ] || die "$t missing: run 'make tools'"
done
[ -x "$TIME" ] || die "$TIME missing: run 'make tools' (Debian package 'time')"
command -v openssl >/dev/null || die "openssl missing: run 'make tools'"
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
start_registry() {
	start_distribution "$WORK" 1
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
# push_image REF CONFIG_LABEL LAYER...: push an image of the tar LAYERs; prints its digest.
push_image() {
	local ref=$1 label=$2 diffs= l
	shift 2
	for l in "$@"; do diffs+="${diffs:+,}\"sha256:$(sha256sum "$l" | cut -d' ' -f1)\""; done
	printf '{"architecture":"amd64","os":"linux","config":{"Labels":{"bench":"%s"}},"rootfs":{"type":"layers","diff_ids":[%s]}}\n' "$label" "$diffs" >"config-$label.json"
	local layers=()
	for l in "$@"; do layers+=("$l:application/vnd.oci.image.layer.v1.tar"); done
	"$ORAS" push --plain-http --no-tty --config "config-$label.json:application/vnd.oci.image.config.v1+json" \
		--format go-template --template '{{.digest}}' "$ref" "${layers[@]}" 2>>"$WORK/logs/gen.log"
	rm "config-$label.json"
}
# decorate REPO DIGEST: one OCI 1.1 referrer and, when signing, a cosign signature.
decorate() {
	"$ORAS" attach --plain-http --no-tty --artifact-type application/vnd.petra.bench.note \
		"$1@$2" note.txt >>"$WORK/logs/gen.log" 2>&1
	if [ "$SIGN" = 1 ]; then
		COSIGN_PASSWORD= "$COSIGN" sign --yes --key "$WORK/cosign.key" --tlog-upload=false \
			--allow-http-registry --allow-insecure-registry "$1@$2" >>"$WORK/logs/gen.log" 2>&1
	fi
}
for i in $(seq 1 "$N"); do
	head -c $((UNIQUE_MB << 20)) /dev/urandom >"unique-$i.bin"
	tar -cf "unique-$i.tar" "unique-$i.bin" && rm "unique-$i.bin"
	SRC_DIGEST[i]=$(push_image "$REG/bench/img-$i:v1" "img-$i" base.tar "unique-$i.tar")
	rm "unique-$i.tar"
	decorate "$REG/bench/img-$i" "${SRC_DIGEST[i]}"
done
rm -f base.tar
HUGE_DIGEST=
if [ "$HUGE_MB" -gt 0 ]; then
	head -c $((HUGE_MB << 20)) /dev/urandom >huge.bin
	tar -cf huge.tar huge.bin && rm huge.bin
	HUGE_DIGEST=$(push_image "$REG/bench/huge:v1" huge huge.tar)
	rm huge.tar
	decorate "$REG/bench/huge" "$HUGE_DIGEST"
fi
cd "$ROOT"
total_mb=$((BASE_MB + N * UNIQUE_MB))
log "generated $N images ($BASE_MB MiB shared base + $UNIQUE_MB MiB unique each: $((N * (BASE_MB + UNIQUE_MB))) MiB referenced, $total_mb MiB distinct), one referrer each, signed=$SIGN, huge image $HUGE_MB MiB, in $((SECONDS - gen_t0))s"

# --- measuring --------------------------------------------------------------------------
# timed KEY CMD...: run CMD under /usr/bin/time, append "wall_s peak_rss_kib" to times/KEY
# (wall from the clock to the millisecond; /usr/bin/time rounds to 10 ms).
timed() {
	local key=$1 t0 t1 rss
	shift
	t0=$(date +%s.%N)
	if ! "$TIME" -f '%M' -o "$WORK/times/$key.rss" "$@" >>"$WORK/logs/$key.log" 2>&1; then
		log "$key failed: $*"
		tail -n 5 "$WORK/logs/$key.log" | sed 's/^/    /' >&2
		return 1
	fi
	t1=$(date +%s.%N)
	rss=$(tail -n 1 "$WORK/times/$key.rss")
	awk -v a="$t0" -v b="$t1" -v m="$rss" 'BEGIN {printf "%.3f %d\n", b - a, m}' >>"$WORK/times/$key"
}

# check PREFIX [SIG]: how many images arrived under REG/PREFIX with the source digest, a
# referrer and (when signed and SIG is not 0) the cosign signature tag.
check() {
	local prefix=$1 sig=${2:-1} ok=0 i repo d refs tags
	[ "$SIGN" = 1 ] || sig=0
	for i in $(seq 1 "$N"); do
		repo=$REG/$prefix/bench/img-$i
		d=$("$REGCTL" "${RC[@]}" image digest "$repo:v1" 2>/dev/null) || continue
		[ "$d" = "${SRC_DIGEST[i]}" ] || continue
		refs=$("$REGCTL" "${RC[@]}" artifact list "$repo@$d" --format '{{len .Descriptors}}' 2>/dev/null) || continue
		[ "${refs:-0}" -ge 1 ] || continue
		if [ "$sig" = 1 ]; then
			tags=$("$REGCTL" "${RC[@]}" tag ls "$repo" 2>/dev/null) || continue
			grep -qx "sha256-${d#sha256:}.sig" <<<"$tags" || continue
		fi
		ok=$((ok + 1))
	done
	if [ "$sig" = 1 ]; then echo "$ok/$N"; else echo "$ok/$N nosig"; fi
}

ROWS=() # "tool|step|calls|wall|rss_kib|status", one per run
record() { # record TOOL STEP KEY CALLS STATUS
	local wall=- rss=-
	if [ "${5%% *}" = ok ] && [ -s "$WORK/times/$3" ]; then
		read -r wall rss < <(awk '{w += $1; if ($2 > m) m = $2} END {printf "%.3f %d\n", w, m}' "$WORK/times/$3")
	fi
	ROWS+=("$1|$2|$4|$wall|$rss|$5")
}

run_loop() { # run_loop FUNCTION: call FUNCTION i for every image i
	local fn=$1 i
	for i in $(seq 1 "$N"); do
		$fn "$i" || return 1
	done
}

PACK="pack: copy only"
PACKV="pack: +verify+sign"
UNPACK="unpack"
VERIFY="verify"
PACKH="pack huge: copy"
VERIFYH="verify huge"
UNPACKH="unpack huge"

# petra-oci
petra_ok=1
if ! go build -o "$PETRA" ./cmd/petra-oci 2>"$WORK/logs/petra-build.log"; then
	log "petra-oci does not build:"
	tail -n 5 "$WORK/logs/petra-build.log" | sed 's/^/    /' >&2
	petra_ok=0
fi
# The copy-only pack has no key and no policy. The verified pack checks every image's
# cosign signature (--image-key) and signs the bundle (--key); unpack verifies that bundle
# (signature, then every file) before it pushes, which is part of its job, so it is
# measured. Without cosign there is no key: then the verified pack is skipped and unpack
# runs on the copy-only bundle with --unsafe-skip-verify.
if [ -f "$WORK/cosign.key" ] && [ "$SIGN" = 1 ]; then
	PETRA_SIGN=(--key "$WORK/cosign.key" --image-key "$WORK/cosign.pub")
	PETRA_VERIFY=(--key "$WORK/cosign.pub")
else
	PETRA_SIGN=()
	PETRA_VERIFY=(--unsafe-skip-verify)
	log "no cosign key or unsigned images: no verified pack; unpack runs with --unsafe-skip-verify"
fi
# bundle_files DIR: every file of the bundle DIR, one a line (what verify hashes).
bundle_files() { find "$1" -type f; }
# sha_limit KEY PAR DIR: the machine's SHA-256 limit on the files of DIR: PAR openssl
# processes (one per core), the files dealt out largest first so each hashes about as
# many bytes, timed from the first start to the last end.
sha_limit() {
	local key=$1 par=$2 dir=$3 k
	find "$dir" -type f -printf '%s %p\n' | sort -rn | awk -v p="$par" -v w="$WORK" '{ print substr($0, index($0, " ") + 1) > (w "/sha-list" (NR - 1) % p) }'
	timed "$key" sh -c 'for l in "$@"; do [ -s "$l" ] && xargs -d "\n" openssl dgst -sha256 <"$l" >/dev/null & done; wait' sh $(for k in $(seq 0 $((par - 1))); do echo "$WORK/sha-list$k"; done)
	rm -f "$WORK"/sha-list*
}

# run_tools R: one measurement of every tool; run R writes to its own layouts and
# destination prefixes (restoredR-TOOL), so no run finds the work of another done.
run_tools() {
	local r=$1 i b
	if [ "$petra_ok" = 1 ]; then
		images=()
		for i in $(seq 1 "$N"); do images+=(--image "$REG/bench/img-$i:v1"); done
		log "petra-oci pack, copy only ($N images, one call)"
		if timed petra-pack$r "$PETRA" pack --plain-http --sbom=false "${images[@]}" -o "$WORK/out/petra-copy$r"; then
			record petra-oci "$PACK" petra-pack$r 1 ok
		else record petra-oci "$PACK" petra-pack$r 1 failed; fi
		b=$WORK/out/petra-copy$r
		if [ ${#PETRA_SIGN[@]} -gt 0 ]; then
			log "petra-oci pack, signatures verified, bundle signed ($N images, one call)"
			if COSIGN_PASSWORD= timed petra-packv$r "$PETRA" pack --plain-http --sbom=false "${PETRA_SIGN[@]}" "${images[@]}" -o "$WORK/out/petra$r"; then
				record petra-oci "$PACKV" petra-packv$r 1 ok
				b=$WORK/out/petra$r
				cat "$b"/blobs/sha256/* >/dev/null # the page cache holds the bundle for each
				log "petra-oci verify; openssl dgst -sha256 of the same files on both cores"
				if timed petra-verify$r "$PETRA" verify "${PETRA_VERIFY[@]}" --state "$WORK/series-verify$r.json" "$b"; then
					record petra-oci "$VERIFY" petra-verify$r 1 ok
				else record petra-oci "$VERIFY" petra-verify$r 1 failed; fi
				if sha_limit sha2-$r 2 "$b"; then
					record "openssl×2" "$VERIFY" sha2-$r "$(bundle_files "$b" | wc -l)" ok
				else record "openssl×2" "$VERIFY" sha2-$r - failed; fi
			else
				record petra-oci "$PACKV" petra-packv$r 1 failed
				b=
			fi
		fi
		if [ -n "$b" ]; then
			log "petra-oci unpack (one call)"
			if timed petra-unpack$r "$PETRA" unpack --to "$REG/restored$r-petra" --plain-http "${PETRA_VERIFY[@]}" --state "$WORK/series-unpack$r.json" "$b"; then
				record petra-oci "$UNPACK" petra-unpack$r 1 "ok $(check restored$r-petra)"
			else record petra-oci "$UNPACK" petra-unpack$r 1 failed; fi
		else record petra-oci "$UNPACK" petra-unpack$r 1 failed; fi

		if [ -n "$HUGE_DIGEST" ]; then
			b=$WORK/out/petra-huge$r
			log "petra-oci pack, copy only, of one $HUGE_MB MiB image"
			if timed petra-packh$r "$PETRA" pack --plain-http --sbom=false --image "$REG/bench/huge:v1" -o "$b"; then
				record petra-oci "$PACKH" petra-packh$r 1 ok
				if [ "$SIGN" = 1 ] && COSIGN_PASSWORD= "$PETRA" sign --key "$WORK/cosign.key" "$b" >>"$WORK/logs/petra-sign.log" 2>&1; then
					cat "$b"/blobs/sha256/* >/dev/null
					log "petra-oci verify of the huge bundle; openssl dgst -sha256 on one core"
					if timed petra-verifyh$r "$PETRA" verify "${PETRA_VERIFY[@]}" --state "$WORK/series-verifyh$r.json" "$b"; then
						record petra-oci "$VERIFYH" petra-verifyh$r 1 ok
					else record petra-oci "$VERIFYH" petra-verifyh$r 1 failed; fi
					if sha_limit sha1-$r 1 "$b"; then
						record "openssl×1" "$VERIFYH" sha1-$r "$(bundle_files "$b" | wc -l)" ok
					else record "openssl×1" "$VERIFYH" sha1-$r - failed; fi
				fi
				log "petra-oci unpack of the huge bundle"
				if timed petra-unpackh$r "$PETRA" unpack --to "$REG/restored$r-huge" --plain-http "${PETRA_VERIFY[@]}" --state "$WORK/series-unpackh$r.json" "$b"; then
					record petra-oci "$UNPACKH" petra-unpackh$r 1 ok
				else record petra-oci "$UNPACKH" petra-unpackh$r 1 failed; fi
			else record petra-oci "$PACKH" petra-packh$r 1 failed; fi
		fi
	else
		record petra-oci "$PACK" petra-pack$r 1 failed
		record petra-oci "$UNPACK" petra-unpack$r 1 failed
	fi

	# oras copy -r: one call per image, all into one shared layout (tag img-N).
	oras_cp_pack() { timed oras-cp-pack$r "$ORAS" copy -r --from-plain-http --no-tty --to-oci-layout "$REG/bench/img-$1:v1" "$WORK/out/orascp$r:img-$1"; }
	oras_cp_unpack() { timed oras-cp-unpack$r "$ORAS" copy -r --to-plain-http --no-tty --from-oci-layout "$WORK/out/orascp$r:img-$1" "$REG/restored$r-orascp/bench/img-$1:v1"; }
	log "oras copy -r --to-oci-layout ($N calls, one per image, one shared layout)"
	if run_loop oras_cp_pack; then
		record "oras cp" "$PACK" oras-cp-pack$r "$N" ok
		log "oras copy -r --from-oci-layout ($N calls)"
		if run_loop oras_cp_unpack; then
			record "oras cp" "$UNPACK" oras-cp-unpack$r "$N" "ok $(check restored$r-orascp 0)"
		else record "oras cp" "$UNPACK" oras-cp-unpack$r "$N" failed; fi
	else
		record "oras cp" "$PACK" oras-cp-pack$r "$N" failed
		record "oras cp" "$UNPACK" oras-cp-unpack$r "$N" failed
	fi

	# oras backup/restore: one repository per call, so one layout per repository.
	oras_backup() { timed oras-backup$r "$ORAS" backup --plain-http --no-tty --include-referrers -o "$WORK/out/oras$r/img-$1" "$REG/bench/img-$1"; }
	oras_restore() { timed oras-restore$r "$ORAS" restore --plain-http --no-tty --input "$WORK/out/oras$r/img-$1" "$REG/restored$r-oras/bench/img-$1"; }
	log "oras backup ($N calls, one per repository, all tags)"
	if run_loop oras_backup; then
		record "oras bk" "$PACK" oras-backup$r "$N" ok
		log "oras restore ($N calls)"
		if run_loop oras_restore; then
			record "oras bk" "$UNPACK" oras-restore$r "$N" "ok $(check restored$r-oras)"
		else record "oras bk" "$UNPACK" oras-restore$r "$N" failed; fi
	else
		record "oras bk" "$PACK" oras-backup$r "$N" failed
		record "oras bk" "$UNPACK" oras-restore$r "$N" failed
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

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$RUNS"); do
	[ "$RUNS" = 1 ] || log "run $r of $RUNS"
	run_tools "$r"
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# One row per tool and step: the fastest run's wall time, the largest peak RSS of any
# run, and failed if any run failed.
mapfile -t ROWS < <(printf '%s\n' "${ROWS[@]}" | awk -F'|' -v OFS='|' '
	{ k = $1 "|" $2 }
	!(k in seen) { seen[k] = 1; order[++n] = k; calls[k] = $3; wall[k] = "-"; rss[k] = 0; st[k] = $6 }
	$6 == "failed" { st[k] = "failed" }
	st[k] != "failed" { st[k] = $6; if (wall[k] == "-" || $4 + 0 < wall[k] + 0) wall[k] = $4; if ($5 + 0 > rss[k]) rss[k] = $5 }
	END { for (i = 1; i <= n; i++) { k = order[i]; if (st[k] == "failed") { wall[k] = "-"; rss[k] = "-" }; print k, calls[k], wall[k], rss[k], st[k] } }')

# --- report -----------------------------------------------------------------------------
layout_mb() { [ -d "$1" ] && du -sm "$1" | cut -f1 || echo -; }
bytes_of() { [ -d "$1" ] && du -sb "$1" | cut -f1 || echo 0; }
# get TOOL STEP FIELD: wall or rss (KiB) of a row, "-" when missing or failed
get() {
	local row tool d calls wall rss status
	for row in "${ROWS[@]}"; do
		IFS='|' read -r tool d calls wall rss status <<<"$row"
		[ "$tool" = "$1" ] && [ "$d" = "$2" ] || continue
		case $3 in wall) echo "$wall" ;; rss) echo "$rss" ;; esac
		return
	done
	echo -
}
echo
echo "petra-oci bench: $N images, ${BASE_MB} MiB shared base + ${UNIQUE_MB} MiB unique layer each ($((N * (BASE_MB + UNIQUE_MB))) MiB referenced, $total_mb MiB distinct), 1 referrer each, cosign-signed=$SIGN; huge image: $HUGE_MB MiB"
echo "registry: distribution $("$REGISTRY" --version 2>/dev/null | awk '{print $NF}') on $REG (referrers tag schema); oras $("$ORAS" version 2>/dev/null | awk '/^Version/ {print $2}'), regctl $("$REGCTL" version --format '{{.VCSTag}}' 2>/dev/null); $(nproc) cores; load average $LOAD0 before, $LOAD1 after"
echo "layouts on disk (MiB): petra-oci $(layout_mb "$WORK/out/petra-copy1"), oras copy -r $(layout_mb "$WORK/out/orascp1"), oras backup $(layout_mb "$WORK/out/oras1") (one per repository), regctl $(layout_mb "$WORK/out/regctl1")"
echo "check = images whose v1 tag, referrer and signature (nosig: not counted) reached the destination with the source digest"
echo
printf '%-10s %-19s %5s %9s %13s %-11s %s\n' tool step calls "wall s" "peak RSS MiB" check "petra-oci / peer"
for dir in "$PACK" "$PACKV" "$UNPACK" "$VERIFY" "$PACKH" "$VERIFYH" "$UNPACKH"; do
	# the peer of a step: the fastest other tool of the same step (pack +verify+sign is
	# compared with the fastest copy-only peer: no peer verifies and signs)
	peerdir=$dir
	[ "$dir" = "$PACKV" ] && peerdir=$PACK
	best=
	for row in "${ROWS[@]}"; do
		IFS='|' read -r tool d calls wall rss status <<<"$row"
		[ "$d" = "$peerdir" ] && [ "$tool" != petra-oci ] && [ "$wall" != - ] || continue
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
		printf '%-10s %-19s %5s %9s %13s %-11s %s\n' "$tool" "$d" "$calls" "$wall" "$rss" "${status#ok}" "$ratio"
	done
done
echo "(looped tools: wall = sum over calls, peak RSS = largest single call; $RUNS run(s): fastest wall, largest RSS)"

# --- goals (issue 13 item 3) --------------------------------------------------------------
echo
echo "goals:"
goal() { # goal TEXT VALUE OP LIMIT: print met/MISSED; VALUE "-" is not measured
	local text=$1 v=$2 op=$3 lim=$4 verdict
	if [ "$v" = - ] || [ -z "$v" ]; then verdict="not measured"
	elif awk -v v="$v" -v l="$lim" -v op="$op" 'BEGIN {exit !((op == "<=" && v <= l) || (op == ">=" && v >= l))}'; then verdict=met
	else verdict=MISSED; fi
	printf '  %-58s %8s %s %-6s %s\n' "$text" "$v" "$op" "$lim" "$verdict"
}
ratio() { [ "$1" = - ] || [ "$2" = - ] && { echo -; return; }; awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
mib() { [ "$1" = - ] && { echo -; return; }; awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
fastest() { # fastest STEP: the fastest peer's wall of STEP
	local row tool d calls wall rss status best=-
	for row in "${ROWS[@]}"; do
		IFS='|' read -r tool d calls wall rss status <<<"$row"
		[ "$d" = "$1" ] && [ "$tool" != petra-oci ] && [ "$wall" != - ] || continue
		if [ "$best" = - ] || awk -v a="$wall" -v b="$best" 'BEGIN {exit !(a < b)}'; then best=$wall; fi
	done
	echo "$best"
}
goal "copy-only pack / oras copy -r (wall)" "$(ratio "$(get petra-oci "$PACK" wall)" "$(get "oras cp" "$PACK" wall)")" "<=" 0.80
goal "unpack / fastest peer (wall)" "$(ratio "$(get petra-oci "$UNPACK" wall)" "$(fastest "$UNPACK")")" "<=" 0.50
# verify throughput relative to the SHA-256 limit = openssl's wall / petra-oci's wall on the
# same files (petra-oci also checks the signature and metadata in that time)
goal "verify, many files / openssl on both cores (throughput)" "$(ratio "$(get "openssl×2" "$VERIFY" wall)" "$(get petra-oci "$VERIFY" wall)")" ">=" 0.80
goal "verify, one huge file / openssl on one core (throughput)" "$(ratio "$(get "openssl×1" "$VERIFYH" wall)" "$(get petra-oci "$VERIFYH" wall)")" ">=" 0.80
goal "peak RSS MiB, copy-only pack ($N images)" "$(mib "$(get petra-oci "$PACK" rss)")" "<=" 64
goal "peak RSS MiB, copy-only pack (one $HUGE_MB MiB image)" "$(mib "$(get petra-oci "$PACKH" rss)")" "<=" 64
goal "peak RSS MiB, verify ($N images)" "$(mib "$(get petra-oci "$VERIFY" rss)")" "<=" 64
goal "peak RSS MiB, verify (one $HUGE_MB MiB image)" "$(mib "$(get petra-oci "$VERIFYH" rss)")" "<=" 64
goal "peak RSS MiB, unpack ($N images)" "$(mib "$(get petra-oci "$UNPACK" rss)")" "<=" 64
goal "peak RSS MiB, unpack (one $HUGE_MB MiB image)" "$(mib "$(get petra-oci "$UNPACKH" rss)")" "<=" 64
goal "peak RSS MiB, pack with a cosign key (verified + signed)" "$(mib "$(get petra-oci "$PACKV" rss)")" "<=" 80
if [ -d "$WORK/out/petra1" ]; then
	v=$(bytes_of "$WORK/out/petra1")
	w=$(get petra-oci "$VERIFY" wall)
	[ "$w" = - ] || echo "  verify: $(awk -v b="$v" -v s="$w" 'BEGIN {printf "%.0f", b / s / 1e6}') MB/s over $((v >> 20)) MiB; openssl on both cores $(awk -v b="$v" -v s="$(get "openssl×2" "$VERIFY" wall)" 'BEGIN {printf "%.0f", b / s / 1e6}') MB/s"
fi
