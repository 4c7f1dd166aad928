#!/usr/bin/env bash
# Installs the pinned external tools the tests and benchmarks use, into $TOOLS_BIN
# (default: $(go env GOPATH)/bin). A tool already present at the pinned version is kept,
# so a warm machine pays nothing. Debian packages (skopeo, umoci) need root and apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_BIN=${TOOLS_BIN:-$(go env GOPATH)/bin}
mkdir -p "$TOOLS_BIN"
export GOBIN=$TOOLS_BIN

ORAS_VERSION=v1.3.6
CRANE_VERSION=v0.22.1
REGCTL_VERSION=v0.11.7
COSIGN_VERSION=v2.6.5
# cosign v3, installed as cosign3 next to cosign (v2): the evidence suite compares both.
COSIGN3_VERSION=v3.1.3
DISTRIBUTION_VERSION=v3.1.2
# syft and grype: the CLIs of the exact library versions in go.mod (parity tests of
# internal/sbom and internal/scan). Keep them in step with go.mod.
SYFT_VERSION=v1.57.1
GRYPE_VERSION=v0.121.3
# gator: Gatekeeper's CLI, runs the gator verify suites of internal/admission.
GATOR_VERSION=v3.23.1
# policy-controller's tester (installed as policy-tester): runs the generated
# ClusterImagePolicies and TrustRoot against a registry (conformance/admission_test.go).
POLICY_CONTROLLER_VERSION=v0.13.1
# the OCI distribution-spec conformance tool (installed as oci-conformance): run read-only
# against petra-oci serve (conformance/serve_test.go).
OCI_CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111

log() { printf 'install-tools: %s\n' "$*" >&2; }

# has BIN MODULE VERSION: true when BIN exists and was built from MODULE@VERSION.
has() {
	local bin=$TOOLS_BIN/$1
	[ -x "$bin" ] || return 1
	go version -m "$bin" 2>/dev/null | awk -v m="$2" -v v="$3" '($1=="mod"||$1=="dep") && $2==m && $3==v {f=1} END {exit !f}'
}

goinstall() { # name module path version
	if has "$1" "$2" "$4"; then log "$1 $4 present"; return; fi
	log "installing $1 $4"
	go install "$3@$4"
}

# cosign3: cosign v3 built into a temporary GOBIN, then moved next to cosign (v2) under
# the name cosign3, so both versions are on hand; has() checks it like the others.
cosign3() {
	if has cosign3 github.com/sigstore/cosign/v3 "$COSIGN3_VERSION"; then log "cosign3 $COSIGN3_VERSION present"; return; fi
	log "installing cosign3 (cosign $COSIGN3_VERSION)"
	local tmp
	tmp=$(mktemp -d "$TOOLS_BIN/.cosign3.XXXXXX")
	if ! GOBIN=$tmp go install "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN3_VERSION"; then
		rm -rf "$tmp"
		return 1
	fi
	mv -f "$tmp/cosign" "$TOOLS_BIN/cosign3"
	rmdir "$tmp"
}

# policy-tester: 'go install .../cmd/tester@v0.13.1' is refused (the module has replace
# directives), so build it as the main module from a writable copy of the downloaded
# module. A build from a module directory embeds no module version ("(devel)"), so the
# version is stamped with policy-controller's own ldflag; has_policy_tester reads it
# back with -version.
has_policy_tester() {
	local bin=$TOOLS_BIN/policy-tester
	[ -x "$bin" ] || return 1
	"$bin" -version 2>/dev/null | awk -v v="$POLICY_CONTROLLER_VERSION" '$1=="GitVersion:" && $2==v {f=1} END {exit !f}' &&
		go version -m "$bin" 2>/dev/null | awk '$1=="path" && $2=="github.com/sigstore/policy-controller/cmd/tester" {f=1} END {exit !f}'
}
policy_tester() {
	if has_policy_tester; then log "policy-tester $POLICY_CONTROLLER_VERSION present"; return; fi
	log "building policy-tester (policy-controller $POLICY_CONTROLLER_VERSION)"
	local dir tmp
	dir=$(go mod download -json "github.com/sigstore/policy-controller@$POLICY_CONTROLLER_VERSION" |
		awk -F'"' '$2=="Dir" {print $4}')
	[ -n "$dir" ] || { log "policy-controller $POLICY_CONTROLLER_VERSION: no module directory"; return 1; }
	tmp=$(mktemp -d "$TOOLS_BIN/.policy-tester.XXXXXX")
	cp -r "$dir" "$tmp/src"
	chmod -R u+w "$tmp/src"
	if ! (cd "$tmp/src" && go build -o "$tmp/policy-tester" \
		-ldflags "-X sigs.k8s.io/release-utils/version.gitVersion=$POLICY_CONTROLLER_VERSION" ./cmd/tester); then
		rm -rf "$tmp"
		return 1
	fi
	mv -f "$tmp/policy-tester" "$TOOLS_BIN/policy-tester"
	rm -rf "$tmp"
}

# oci-conformance: a main package with its own go.mod, built with go build in the
# downloaded module's directory. The build embeds no module version, so the version is
# stamped into main.Version, which 'go version -m' shows in the build's -ldflags.
has_oci_conformance() {
	local bin=$TOOLS_BIN/oci-conformance
	[ -x "$bin" ] || return 1
	go version -m "$bin" 2>/dev/null | grep -q -- "-X main.Version=$OCI_CONFORMANCE_VERSION" &&
		go version -m "$bin" 2>/dev/null | awk '$1=="path" && $2=="github.com/opencontainers/distribution-spec/conformance" {f=1} END {exit !f}'
}
oci_conformance() {
	if has_oci_conformance; then log "oci-conformance $OCI_CONFORMANCE_VERSION present"; return; fi
	log "building oci-conformance (distribution-spec conformance $OCI_CONFORMANCE_VERSION)"
	local dir tmp
	dir=$(go mod download -json "github.com/opencontainers/distribution-spec/conformance@$OCI_CONFORMANCE_VERSION" |
		awk -F'"' '$2=="Dir" {print $4}')
	[ -n "$dir" ] || { log "distribution-spec conformance $OCI_CONFORMANCE_VERSION: no module directory"; return 1; }
	tmp=$(mktemp -d "$TOOLS_BIN/.oci-conformance.XXXXXX")
	if ! (cd "$dir" && go build -o "$tmp/oci-conformance" -ldflags "-X main.Version=$OCI_CONFORMANCE_VERSION" .); then
		rm -rf "$tmp"
		return 1
	fi
	mv -f "$tmp/oci-conformance" "$TOOLS_BIN/oci-conformance"
	rmdir "$tmp"
}

# olareg: 'go install olareg@v0.2.2' is refused by the proxy, so build it from this module,
# which pins it with a tool directive in go.mod.
olareg() {
	local version
	version=$(go list -m -f '{{.Version}}' github.com/olareg/olareg)
	if has olareg github.com/olareg/olareg "$version"; then log "olareg $version present"; return; fi
	log "building olareg $version"
	go build -o "$TOOLS_BIN/olareg" github.com/olareg/olareg/cmd/olareg
}

# Debian packages: skopeo and umoci for the interop tests, time (/usr/bin/time) for make bench,
# chromium for the report rendering test, containerd for the pre-pull archive test.
debs() {
	local debs=()
	command -v skopeo >/dev/null || debs+=(skopeo)
	command -v umoci >/dev/null || debs+=(umoci)
	# chromium: headless rendering check of the reviewer report (internal/report)
	command -v chromium >/dev/null || debs+=(chromium)
	[ -x /usr/bin/time ] || debs+=(time)
	# jq: bench/sbom.sh counts the SBOM referrers in the bundle's index.json
	command -v jq >/dev/null || debs+=(jq)
	# containerd (Debian 12: 1.6.20): ctr images import of the pre-pull archive (conformance/prepull_test.go)
	command -v containerd >/dev/null && command -v ctr >/dev/null || debs+=(containerd)
	[ ${#debs[@]} -gt 0 ] || return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		log "installing ${debs[*]} from Debian"
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
	else
		log "${debs[*]} missing and apt-get is not usable: install them by hand"
	fi
}

# spawn NAME CMD...: run CMD in the background, at most $TOOLS_JOBS at a time (module
# downloads overlap compiles; the go build cache is safe to share). reap: wait for one.
TOOLS_JOBS=${TOOLS_JOBS:-3}
declare -A running=()
failed=()
reap() {
	local pid=
	wait -n -p pid || failed+=("${running[$pid]}")
	unset "running[$pid]"
}
spawn() {
	local name=$1
	shift
	while [ ${#running[@]} -ge "$TOOLS_JOBS" ]; do reap; done
	"$@" &
	running[$!]=$name
}

main() {
	debs &
	local debs_pid=$!
	# Longest builds first.
	spawn cosign   goinstall cosign   github.com/sigstore/cosign/v2            github.com/sigstore/cosign/v2/cmd/cosign             "$COSIGN_VERSION"
	spawn cosign3  cosign3
	spawn grype    goinstall grype    github.com/anchore/grype                 github.com/anchore/grype/cmd/grype                   "$GRYPE_VERSION"
	spawn syft     goinstall syft     github.com/anchore/syft                  github.com/anchore/syft/cmd/syft                     "$SYFT_VERSION"
	spawn policy-tester policy_tester
	spawn gator    goinstall gator    github.com/open-policy-agent/gatekeeper/v3 github.com/open-policy-agent/gatekeeper/v3/cmd/gator "$GATOR_VERSION"
	spawn registry goinstall registry github.com/distribution/distribution/v3  github.com/distribution/distribution/v3/cmd/registry "$DISTRIBUTION_VERSION"
	spawn olareg   olareg
	spawn oci-conformance oci_conformance
	spawn regctl   goinstall regctl   github.com/regclient/regclient           github.com/regclient/regclient/cmd/regctl            "$REGCTL_VERSION"
	spawn oras     goinstall oras     oras.land/oras                          oras.land/oras/cmd/oras                              "$ORAS_VERSION"
	spawn crane    goinstall crane    github.com/google/go-containerregistry   github.com/google/go-containerregistry/cmd/crane     "$CRANE_VERSION"
	while [ ${#running[@]} -gt 0 ]; do reap; done
	wait "$debs_pid" || failed+=(debian)
	if [ ${#failed[@]} -gt 0 ]; then
		log "FAILED: ${failed[*]}"
		exit 1
	fi
	log "tools in $TOOLS_BIN"
}

# One line, read whole before it runs: editing this file while it runs cannot change what runs.
main "$@"; exit
