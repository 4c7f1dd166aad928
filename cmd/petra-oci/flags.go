package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/remote"
)

func registryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "plain-http", Usage: "talk plain HTTP to registries (loopback test registries)"},
		&cli.StringFlag{Name: "ca-file", Usage: "PEM `FILE` of CA certificates to trust in addition to the system roots"},
		&cli.BoolFlag{Name: "insecure-skip-tls-verify", Usage: "UNSAFE: do not verify registry TLS certificates"},
		&cli.StringFlag{Name: "docker-config", Usage: "docker config.json `PATH` for credentials (default: $DOCKER_CONFIG or ~/.docker/config.json)"},
		&cli.IntFlag{Name: "concurrency", Value: 4, Usage: "blob transfers in flight"},
		// retries of failed registry operations (docs/faults.md)
		&cli.IntFlag{Name: "retries", Value: remote.DefaultAttempts, Usage: "tries of each registry operation (a blob copy, a manifest, a tag) that fails with a transient error (network, 408, 429, 5xx), the first included; 1 never retries"},
		&cli.DurationFlag{Name: "retry-max-time", Value: remote.DefaultMaxTime, Usage: "give up retrying an operation when the next try would start later than this after its first"},
		&cli.DurationFlag{Name: "retry-backoff", Value: remote.DefaultBackoff, Usage: "wait before the first retry; doubled on each retry up to --retry-max-backoff, with jitter; a registry's Retry-After is honoured when longer"},
		&cli.DurationFlag{Name: "retry-max-backoff", Value: remote.DefaultMaxBackoff, Usage: "longest wait between two tries (a Retry-After excepted)"},
		&cli.Int64Flag{Name: "upload-chunk-threshold", Value: remote.DefaultChunkThreshold, Usage: "upload blobs of at least this many `BYTES` in chunks, resuming a broken upload where the registry's session stands; 0 uploads every blob in one request"},
		&cli.Int64Flag{Name: "upload-chunk-size", Value: remote.DefaultChunkSize, Usage: "`BYTES` per chunk of a chunked upload (streamed, not held in memory)"},
	}
}

func registryClient(c *cli.Context) (*remote.Client, error) {
	retry := remote.RetryOptions{
		Attempts: c.Int("retries"), MaxTime: c.Duration("retry-max-time"),
		Backoff: c.Duration("retry-backoff"), MaxBackoff: c.Duration("retry-max-backoff"),
	}
	if retry.Attempts < 1 || retry.MaxTime <= 0 || retry.Backoff <= 0 || retry.MaxBackoff <= 0 {
		return nil, cli.Exit(fmt.Sprintf("%s: --retries must be at least 1 and the retry durations positive (got %d, %s, %s, %s)",
			c.Command.Name, retry.Attempts, retry.MaxTime, retry.Backoff, retry.MaxBackoff), exitUsage)
	}
	upload := remote.UploadOptions{ChunkThreshold: c.Int64("upload-chunk-threshold"), ChunkSize: c.Int64("upload-chunk-size")}
	if upload.ChunkThreshold < 0 || upload.ChunkSize <= 0 {
		return nil, cli.Exit(fmt.Sprintf("%s: --upload-chunk-threshold must not be negative and --upload-chunk-size must be positive (got %d, %d)",
			c.Command.Name, upload.ChunkThreshold, upload.ChunkSize), exitUsage)
	}
	if upload.ChunkThreshold == 0 {
		upload.ChunkThreshold = -1 // none
	}
	return remote.NewClient(remote.Options{
		PlainHTTP:             c.Bool("plain-http"),
		CAFile:                c.String("ca-file"),
		InsecureSkipTLSVerify: c.Bool("insecure-skip-tls-verify"),
		DockerConfig:          c.String("docker-config"),
		UserAgent:             "petra-oci/" + version,
		Retry:                 retry,
		Upload:                upload,
		Log:                   logger(c),
	})
}

func outputFlag() cli.Flag {
	return &cli.StringFlag{Name: "output", Value: "text", Usage: "result format: text or json"}
}

// wantJSON reports whether --output asks for JSON, refusing unknown formats.
func wantJSON(c *cli.Context) (bool, error) {
	switch c.String("output") {
	case "text", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, cli.Exit(fmt.Sprintf("--output %q: want text or json", c.String("output")), exitUsage)
}

// JSONAPIVersion versions every --output json document (docs/json-output.md): within
// v1, fields are only ever added; a removal, a rename or a change of meaning is v2.
const JSONAPIVersion = "petra-oci.dev/v1"

// writeJSON writes v, a JSON object, as the command's --output json document: its
// fields, led by "apiVersion" (JSONAPIVersion) and "kind" (jsonKind of the command).
func writeJSON(c *cli.Context, v any) error {
	b, err := versionedJSON(jsonKind(c.Command.FullName()), v)
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(b)
	return err
}

// versionedJSON marshals v (which must marshal to an object) with apiVersion and kind
// as its first fields, indented, newline-terminated.
func versionedJSON(kind string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	body = bytes.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("--output json: %s result is not a JSON object", kind)
	}
	head, err := json.Marshal(struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}{JSONAPIVersion, kind})
	if err != nil {
		return nil, err
	}
	doc := head // {"apiVersion":…,"kind":…}
	if string(body) != "{}" {
		doc = append(append(head[:len(head)-1], ','), body[1:]...)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, doc, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// jsonKind names the document of a command: "pack" → "PackResult", "verify-blob" →
// "VerifyBlobResult", "audit verify" → "AuditVerifyResult".
func jsonKind(command string) string {
	var b strings.Builder
	for _, w := range strings.FieldsFunc(command, func(r rune) bool { return r == ' ' || r == '-' }) {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String() + "Result"
}

// required returns a usage error (exit 2, message on stderr) when flag is unset.
// Flags are not marked Required: urfave/cli would print the help on stdout.
func required(c *cli.Context, flags ...string) error {
	for _, f := range flags {
		if c.String(f) == "" {
			return cli.Exit(c.Command.Name+": --"+f+" is required (see --help)", exitUsage)
		}
	}
	return nil
}

// render writes v as JSON to stdout, or calls text, which writes results to stdout and
// summaries to stderr. Commands render even a partial result of a failed run.
func render(c *cli.Context, asJSON bool, v any, text func()) error {
	if asJSON {
		return writeJSON(c, v)
	}
	text()
	return nil
}
