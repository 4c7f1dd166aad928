// Package conformance holds the suites that prove petra-oci against real registries and
// real tools: round trips through registries with and without the referrers API, and
// interop with oras, regctl, skopeo, crane and cosign. It has no non-test code.
package conformance
