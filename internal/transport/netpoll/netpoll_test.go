package netpoll

import (
	"testing"
	"time"

	"github.com/lesismal/nbio"
)

// An engine stopped right after WaitStarted stops: without the wait the
// poller library can miss the stop and hang.
func TestStartThenStopDoesNotHang(t *testing.T) {
	for i := 0; i < 30; i++ {
		e := nbio.NewEngine(nbio.Config{NPoller: 2})
		e.OnData(Dispatch)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		if err := WaitStarted(e, 5*time.Second); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		done := make(chan struct{})
		go func() { e.Stop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: engine did not stop", i)
		}
	}
}
