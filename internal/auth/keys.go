package auth

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Keys holds publisher API keys or the admin key; comparison is constant-time (crypto/subtle) over every configured key.
//
// Keys are kept as SHA-256 digests: comparing fixed-size digests hides the
// length of the configured keys as well as their content, and every
// configured key is compared on every call, so the time taken does not
// tell which key (if any) came close. A Keys is immutable and safe for
// concurrent use; the zero value and nil hold no key.
type Keys struct {
	digests [][sha256.Size]byte
}

// NewKeys returns the set of the given keys; empty strings are ignored, so
// a configuration list like "a,,b" or an unset variable does not add a key
// that an empty credential would match.
func NewKeys(keys ...string) *Keys {
	k := &Keys{}
	for _, s := range keys {
		if s != "" {
			k.digests = append(k.digests, sha256.Sum256([]byte(s)))
		}
	}
	return k
}

// Valid reports whether presented is one of the keys. It is false for ""
// and when no key is configured.
func (k *Keys) Valid(presented string) bool {
	if k == nil || len(k.digests) == 0 || presented == "" {
		return false
	}
	d := sha256.Sum256([]byte(presented))
	match := 0
	for i := range k.digests {
		match |= subtle.ConstantTimeCompare(d[:], k.digests[i][:])
	}
	return match == 1
}

// Len is the number of keys configured.
func (k *Keys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.digests)
}
