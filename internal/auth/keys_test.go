package auth

import "testing"

func TestKeys(t *testing.T) {
	k := NewKeys("pub-key-1", "", "pub-key-2")
	if k.Len() != 2 {
		t.Fatalf("Len %d, want 2 (empty strings ignored)", k.Len())
	}
	for _, s := range []string{"pub-key-1", "pub-key-2"} {
		if !k.Valid(s) {
			t.Errorf("Valid(%q) = false", s)
		}
	}
	for _, s := range []string{"", "pub-key-", "pub-key-10", "PUB-KEY-1", " pub-key-1", "pub-key-1\x00"} {
		if k.Valid(s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
}

func TestKeysEmpty(t *testing.T) {
	var nilKeys *Keys
	for name, k := range map[string]*Keys{"none": NewKeys(), "blank": NewKeys("", ""), "zero": {}, "nil": nilKeys} {
		if k.Len() != 0 || k.Valid("") || k.Valid("anything") {
			t.Errorf("%s: Len %d, or a key was accepted", name, k.Len())
		}
	}
}

// TestKeysComparesEveryKey checks the loop has no early exit: the position
// of the matching key must not matter, and Valid does the same work for a
// hit as for a miss (one digest, one compare per key, no allocation).
func TestKeysComparesEveryKey(t *testing.T) {
	k := NewKeys("a", "b", "c", "d")
	for _, s := range []string{"a", "d"} {
		if !k.Valid(s) {
			t.Fatalf("Valid(%q) = false", s)
		}
	}
	if n := testing.AllocsPerRun(100, func() { k.Valid("a"); k.Valid("zzz") }); n != 0 {
		t.Fatalf("%v allocations per Valid", n)
	}
}

func BenchmarkKeysValid(b *testing.B) {
	k := NewKeys("key-one-0123456789", "key-two-0123456789", "key-three-0123456789")
	for b.Loop() {
		k.Valid("key-three-0123456789")
	}
}
