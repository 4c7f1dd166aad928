package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/referrers"
)

// childEnv makes the test binary act as the analyzer process: it speaks the protocol
// on stdin/stdout and answers each Request by its Repository (see child).
const childEnv = "PETRA_JOB_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := child(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is a stand-in analyzer that fails the way internal/analyze does: a request for
// "over" is over the thresholds (the error wraps scanreport.ErrThreshold, as
// internal/scan returns it), "broken" fails otherwise, anything else passes.
func child() error {
	dec, enc := json.NewDecoder(os.Stdin), json.NewEncoder(os.Stdout)
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		return err
	}
	if err := enc.Encode(Response{}); err != nil {
		return err
	}
	// "slow" waits until a later "fast" request is answered: only an analyzer that
	// works on several requests at once, answering each as it finishes, gets past it
	fastDone := make(chan struct{})
	return Serve(context.Background(), dec, enc, cfg.Parallelism, func(_ context.Context, req Request) Response {
		switch req.Repository {
		case "over":
			err := fmt.Errorf("%w: over:1: CVE-2024-3094", scanreport.ErrThreshold)
			return Response{Error: err.Error(), Threshold: errors.Is(err, scanreport.ErrThreshold)}
		case "broken":
			return Response{Error: "syft: cannot read layer"}
		case "slow":
			<-fastDone
			return Response{Attachments: []referrers.Attachment{{Tag: "slow"}}}
		case "fast":
			defer close(fastDone)
			return Response{Attachments: []referrers.Attachment{{Tag: "fast"}}}
		}
		return Response{}
	})
}

// TestConcurrentRequests: requests in flight at once are worked on in parallel and
// each answer reaches its own caller, whatever the order they finish in.
func TestConcurrentRequests(t *testing.T) {
	t.Setenv(childEnv, "1")
	c, err := Start(context.Background(), os.Args[0], Config{Dir: t.TempDir(), Parallelism: 2}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type answer struct {
		tag string
		err error
	}
	slow := make(chan answer, 1)
	go func() {
		atts, err := c.Analyze(Request{Repository: "slow"})
		a := answer{err: err}
		if len(atts) == 1 {
			a.tag = atts[0].Tag
		}
		slow <- a
	}()
	time.Sleep(50 * time.Millisecond) // "slow" first
	atts, err := c.Analyze(Request{Repository: "fast"})
	if err != nil || len(atts) != 1 || atts[0].Tag != "fast" {
		t.Fatalf("fast: %v %v", atts, err)
	}
	select {
	case a := <-slow:
		if a.err != nil || a.tag != "slow" {
			t.Errorf("slow: got %q, %v; want its own answer", a.tag, a.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("slow never answered")
	}
}

// TestThresholdAcrossTheHop: a threshold failure in the analyzer process stays
// errors.Is(err, scanreport.ErrThreshold) in petra-oci, with the CVEs in its message
// once; another failure does not match it.
func TestThresholdAcrossTheHop(t *testing.T) {
	t.Setenv(childEnv, "1")
	c, err := Start(context.Background(), os.Args[0], Config{Dir: t.TempDir()}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_, err = c.Analyze(Request{Repository: "over"})
	if !errors.Is(err, scanreport.ErrThreshold) {
		t.Fatalf("over the thresholds: err = %v, want one wrapping scanreport.ErrThreshold", err)
	}
	if got := err.Error(); strings.Count(got, scanreport.ErrThreshold.Error()) != 1 || !strings.Contains(got, "CVE-2024-3094") {
		t.Errorf("message %q: want the sentinel once and the CVE", got)
	}

	_, err = c.Analyze(Request{Repository: "broken"})
	if err == nil || errors.Is(err, scanreport.ErrThreshold) || !strings.Contains(err.Error(), "cannot read layer") {
		t.Errorf("another failure: err = %v, want its own message, not ErrThreshold", err)
	}

	if _, err := c.Analyze(Request{Repository: "fine"}); err != nil {
		t.Errorf("a passing image: %v", err)
	}
}
