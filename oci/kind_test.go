package oci

import "testing"

// TestKindPredicates pins what every kind is: a new kind, or a changed predicate,
// changes what unpack pushes, inspect shows and layout names, so it must change here.
func TestKindPredicates(t *testing.T) {
	type preds struct{ image, child, tree, attachment, referrer, tagScheme, derived, subject bool }
	want := map[Kind]preds{
		KindImage:          {image: true, tree: true},
		KindChild:          {child: true, tree: true},
		KindReferrer:       {attachment: true, referrer: true, subject: true},
		KindCosignSig:      {attachment: true, tagScheme: true, subject: true},
		KindCosignAtt:      {attachment: true, tagScheme: true, subject: true},
		KindCosignSBOM:     {attachment: true, tagScheme: true, subject: true},
		KindReferrersIndex: {derived: true, subject: true},
		"unknown":          {},
	}
	if len(Kinds) != len(want)-1 {
		t.Fatalf("Kinds has %d kinds, the table %d: classify the new kind here", len(Kinds), len(want)-1)
	}
	for k, w := range want {
		got := preds{k.IsImage(), k.IsChild(), k.IsTree(), k.IsAttachment(), k.IsReferrer(), k.IsTagScheme(), k.IsDerived(), k.HasSubject()}
		if got != w {
			t.Errorf("%q: predicates %+v, want %+v", k, got, w)
		}
		if k.Known() != (k != "unknown") {
			t.Errorf("%q: Known() = %v", k, k.Known())
		}
		suf, ok := k.TagSuffix()
		if ok != w.tagScheme || ok == (suf == "") {
			t.Errorf("%q: TagSuffix() = %q, %v", k, suf, ok)
		}
	}
}
