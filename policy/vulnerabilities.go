package policy

import (
	"fmt"
	"time"

	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
)

// Vulnerabilities is what the vulnerability scan at pack must find acceptable: the
// thresholds, the accepted findings (each with a reason and an expiry) and how old the
// offline database may be. A policy with this section refuses to pack without a
// vulnerability database.
type Vulnerabilities struct {
	// FailOn refuses an image with a finding of this severity or worse
	// (negligible, low, medium, high, critical); empty: no severity threshold.
	FailOn string `json:"failOn,omitempty"`
	// FailOnFixable refuses an image with any finding that has a fix.
	FailOnFixable bool `json:"failOnFixable,omitempty"`
	// Mode is "enforce" (default: refuse) or "warn" (pack, record the violation).
	Mode string `json:"mode,omitempty"`
	// MaxDBAge refuses a database built longer ago than this Go duration ("120h").
	MaxDBAge string `json:"maxDBAge,omitempty"`
	// Exceptions are accepted findings: cve, image glob, reason, expires (required).
	Exceptions []scanreport.Exception `json:"exceptions,omitempty"`
}

// Thresholds returns the scan thresholds.
func (v *Vulnerabilities) Thresholds() scanreport.Thresholds {
	return scanreport.Thresholds{FailOn: scanreport.Severity(v.FailOn), FailOnFixable: v.FailOnFixable, Mode: scanreport.Mode(v.Mode)}
}

// DBMaxAge returns MaxDBAge parsed (0: no limit).
func (v *Vulnerabilities) DBMaxAge() time.Duration {
	d, _ := time.ParseDuration(v.MaxDBAge) // validated at load
	return d
}

func (v *Vulnerabilities) validate() error {
	if v.FailOn != "" {
		sev, err := scanreport.ParseSeverity(v.FailOn)
		if err != nil {
			return fmt.Errorf("vulnerabilities.failOn: %w", err)
		}
		v.FailOn = string(sev)
	}
	if err := v.Thresholds().Validate(); err != nil {
		return fmt.Errorf("vulnerabilities: %w", err)
	}
	if v.MaxDBAge != "" {
		if d, err := time.ParseDuration(v.MaxDBAge); err != nil || d <= 0 {
			return fmt.Errorf("vulnerabilities.maxDBAge %q: want a positive duration such as 120h", v.MaxDBAge)
		}
	}
	for i, e := range v.Exceptions {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("vulnerabilities.exceptions[%d]: %w", i, err)
		}
	}
	return nil
}
