package inbox

import (
	"context"
	"sync"

	"github.com/tidings/tidings"
)

// orderedQueue carries notifications from the store's commit hook to the
// broker in commit order: the hook must not block, the broker may.
type orderedQueue struct {
	mu    sync.Mutex
	items []tidings.Notification
	wake  chan struct{}
}

func newOrderedQueue() *orderedQueue { return &orderedQueue{wake: make(chan struct{}, 1)} }

func (q *orderedQueue) push(ns []tidings.Notification) {
	q.mu.Lock()
	q.items = append(q.items, ns...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *orderedQueue) take(buf []tidings.Notification) []tidings.Notification {
	q.mu.Lock()
	defer q.mu.Unlock()
	buf = append(buf[:0], q.items...)
	clear(q.items)
	q.items = q.items[:0]
	return buf
}

// Run publishes committed notifications, in commit order, until ctx is
// done; what is queued then is still published. Without a store that
// reports commits, Send publishes itself and Run only waits.
func (s *Service) Run(ctx context.Context) {
	if s.queue == nil {
		<-ctx.Done()
		return
	}
	var buf []tidings.Notification
	for {
		select {
		case <-ctx.Done():
			buf = s.queue.take(buf)
			s.publishAll(context.Background(), buf)
			return
		case <-s.queue.wake:
			buf = s.queue.take(buf)
			s.publishAll(ctx, buf)
		}
	}
}

func (s *Service) publishAll(ctx context.Context, ns []tidings.Notification) {
	for i := range ns {
		s.publishNotification(ctx, &ns[i])
	}
}
