// Package membroker is the Broker of a single Tidings process: a publish is
// handed straight to the local fan-out.
package membroker

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/tidings/tidings"
)

// Broker delivers in-process. Publish calls the handler on the publisher's
// goroutine; the handler (the hub) only queues, so publish order per
// channel is kept and nothing blocks.
type Broker struct {
	handler atomic.Pointer[func(*tidings.Message)]
}

var _ tidings.Broker = (*Broker)(nil)

// New makes a memory broker.
func New() *Broker { return &Broker{} }

// ErrNotRunning is returned by Publish before Run or after it returned.
var ErrNotRunning = errors.New("membroker: not running")

// Publish delivers m to the running handler.
func (b *Broker) Publish(ctx context.Context, m *tidings.Message) error {
	h := b.handler.Load()
	if h == nil {
		return ErrNotRunning
	}
	(*h)(m)
	return nil
}

// Run installs handler until ctx is done.
func (b *Broker) Run(ctx context.Context, handler func(*tidings.Message)) error {
	if !b.handler.CompareAndSwap(nil, &handler) {
		return errors.New("membroker: already running")
	}
	<-ctx.Done()
	b.handler.Store(nil)
	return nil
}
