package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

// TestVersionedJSON: apiVersion and kind lead every document, the result's own fields
// follow unchanged and in order, and a result that is not an object is refused.
func TestVersionedJSON(t *testing.T) {
	type result struct {
		Dir    string   `json:"dir"`
		Images []string `json:"images"`
	}
	b, err := versionedJSON("PackResult", result{Dir: "/b", Images: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var keys []string
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(keys, ",") != "apiVersion,kind,dir,images" {
		t.Errorf("keys = %v, want apiVersion, kind, then the result's", keys)
	}
	var doc struct{ APIVersion, Kind, Dir string }
	if err := json.Unmarshal(b, &doc); err != nil || doc.APIVersion != JSONAPIVersion || doc.Kind != "PackResult" || doc.Dir != "/b" {
		t.Errorf("decoded %+v (%v) from %s", doc, err, b)
	}
	if !bytes.HasSuffix(b, []byte("}\n")) {
		t.Errorf("document not newline-terminated: %q", b)
	}
	if b, err := versionedJSON("EmptyResult", struct{}{}); err != nil || !json.Valid(b) || !bytes.Contains(b, []byte(`"kind": "EmptyResult"`)) {
		t.Errorf("empty result: %s %v", b, err)
	}
	if _, err := versionedJSON("ListResult", []string{"a"}); err == nil {
		t.Error("a JSON array was accepted as a document")
	}
	for cmd, want := range map[string]string{"pack": "PackResult", "verify-blob": "VerifyBlobResult", "audit verify": "AuditVerifyResult"} {
		if got := jsonKind(cmd); got != want {
			t.Errorf("jsonKind(%q) = %q, want %q", cmd, got, want)
		}
	}
}

// TestJSONKindsDocumented: every command with --output has a section, named by its
// kind, in docs/json-output.md.
func TestJSONKindsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/json-output.md")
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, cmds []*cli.Command)
	n := 0
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(prefix + " " + c.Name)
			for _, f := range c.Flags {
				if f.Names()[0] == "output" {
					n++
					if kind := jsonKind(name); !bytes.Contains(doc, []byte("### "+kind+"\n")) {
						t.Errorf("%s has --output, but docs/json-output.md has no section %q", name, "### "+kind)
					}
				}
			}
			walk(name, c.Subcommands)
		}
	}
	walk("", newApp(io.Discard, io.Discard).Commands)
	if n < 5 {
		t.Errorf("found %d commands with --output; the walk is broken", n)
	}
}

// TestJSONKeysCamelCase: every key of the pack, unpack, verify and verify-blob
// documents, nested objects included, is camelCase as the rest of the documents are
// (graphcopy's stats and the signature once came out as BlobsCopied, Mode, KeyID).
func TestJSONKeysCamelCase(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(tp reflect.Type, path string)
	walk = func(tp reflect.Type, path string) {
		for tp.Kind() == reflect.Pointer || tp.Kind() == reflect.Slice || tp.Kind() == reflect.Array || tp.Kind() == reflect.Map {
			tp = tp.Elem()
		}
		if tp.Kind() != reflect.Struct || seen[tp] {
			return
		}
		seen[tp] = true
		for i := range tp.NumField() {
			f := tp.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-":
				continue
			case name == "" && f.Anonymous:
				walk(f.Type, path)
				continue
			case name == "":
				name = f.Name
			}
			if unicode.IsUpper([]rune(name)[0]) || strings.ContainsAny(name, "_-") {
				t.Errorf("%s.%s (field %s of %s) is not camelCase", path, name, f.Name, tp)
			}
			walk(f.Type, path+"."+name)
		}
	}
	walk(reflect.TypeOf(pack.Result{}), "PackResult")
	walk(reflect.TypeOf(unpack.Result{}), "UnpackResult")
	walk(reflect.TypeOf(bundle.Report{}), "VerifyResult")
	walk(reflect.TypeOf(signing.Result{}), "VerifyBlobResult")
	if len(seen) < 10 {
		t.Fatalf("walked %d types: the documents' types were not reached", len(seen))
	}
}
