package pack

import (
	"context"
	"errors"
	"testing"

	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/remote"
)

// The zero value verifies: without a Policy, Pack refuses before it touches the
// directory or the network, unless verification is turned off by name.
func TestPackRequiresPolicy(t *testing.T) {
	client, err := remote.NewClient(remote.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() + "/b"
	// 127.0.0.1:1 is never dialled: both refusals come before any request
	opts := Options{Images: []ImageSpec{{Ref: "127.0.0.1:1/x:1"}}, Dir: dir, Client: client}
	if _, err := Pack(context.Background(), opts); !errors.Is(err, ErrNoPolicy) || !errors.Is(err, oci.ErrInvalid) {
		t.Fatalf("zero-value options: err = %v, want ErrNoPolicy", err)
	}
	opts.Policy, opts.UnsafeNoPolicy = &policy.Policy{}, true
	if _, err := Pack(context.Background(), opts); err == nil || errors.Is(err, ErrNoPolicy) || !errors.Is(err, oci.ErrInvalid) {
		t.Fatalf("Policy and UnsafeNoPolicy: err = %v, want an invalid-options error", err)
	}
}
