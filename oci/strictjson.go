package oci

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// CheckJSONKeys refuses, in b (one well-formed JSON value), an object key that is not
// in allowed exactly (keys are case-sensitive, unlike encoding/json's matching), or
// that appears twice in one object, at any depth. Strict formats (the bundle metadata,
// receipts) run it before decoding, so that no two readers can see different documents.
func CheckJSONKeys(b []byte, allowed map[string]bool) error {
	type frame struct {
		keys    map[string]bool // nil for an array
		wantKey bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil && stack[n-1].wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			k, _ := tok.(string)
			if !allowed[k] {
				return fmt.Errorf("unknown key %q", k)
			}
			if stack[n-1].keys[k] {
				return fmt.Errorf("duplicate key %q", k)
			}
			stack[n-1].keys[k] = true
			stack[n-1].wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}
