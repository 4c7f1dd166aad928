SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# Pinned external tools (oras, crane, regctl, registry, cosign, olareg) live here.
GOBIN_DIR := $(shell go env GOPATH)/bin
export PATH := $(GOBIN_DIR):$(PATH)

TEST_TIMEOUT ?= 30m

.PHONY: build tools test demo bench bench-verify bench-serve bench-transfer bench-sbom bench-scale fips clean

build:
	go build -o bin/ ./cmd/petra-oci ./cmd/petra-oci-analyze

tools:
	scripts/install-tools.sh

test: tools
	go vet ./...
	go test -timeout $(TEST_TIMEOUT) ./...
	# the data path's goroutines (export digests, hashing while writing) under the race detector
	go test -race -timeout $(TEST_TIMEOUT) ./internal/archive/ ./layout/
	# signing and verification again inside Go's FIPS 140-3 module (docs/fips.md)
	GODEBUG=fips140=only go test -timeout $(TEST_TIMEOUT) ./signing/ ./layout/
	@echo "make test: all tests passed"

demo:
	go run ./cmd/petra-oci demo

bench:
	bench/run.sh
	bench/verify.sh
	bench/serve.sh
	bench/transfer.sh
	bench/sbom.sh

bench-verify:
	bench/verify.sh

bench-serve:
	bench/serve.sh
bench-transfer:
	bench/transfer.sh
bench-sbom:
	bench/sbom.sh
# not part of make bench: 200 and 2,000 images take about an hour on 2 cores (docs/scale.md)
bench-scale:
	bench/scale.sh

fips:
	mkdir -p bin/fips && GOFIPS140=v1.0.0 go build -o bin/fips/ ./cmd/petra-oci ./cmd/petra-oci-analyze

clean:
	rm -rf bin .bench
