package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
)

// Checkpoints, off the writer's path.
//
// SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL
// past its limit: it copies every page changed since the last checkpoint
// back into the database file and syncs that file, while every request
// queued behind the commit waits (up to a quarter of a second at 25,000
// notifications/s). So the writer's automatic checkpoint is off, and a
// goroutine with a connection of its own does the copying, beside the
// writer, which goes on committing.
//
// One thing a checkpoint beside a busy writer cannot do is let the WAL
// start over: SQLite writes the WAL from its beginning again only at a
// write transaction that finds all of it copied back, and a checkpoint
// that runs while commits go on never leaves it so. Left at that, the WAL
// grows without end. So the checkpointer copies in passes, each copying
// what was written during the one before, until what is left is short
// (tailBytes); then the writer copies that rest itself, between two
// transactions (a few milliseconds), and its next transaction starts the
// WAL over (see copyTail).

// tailBytes is about as much WAL as the writer is asked to copy itself.
const tailBytes = 1 << 20

// maxPasses bounds the checkpointer's passes in one round: a writer that
// outruns it leaves a longer tail to the writer rather than none.
const maxPasses = 6

// walHeaderBytes and walFrameHeaderBytes are fixed by SQLite's WAL format.
const (
	walHeaderBytes      = 32
	walFrameHeaderBytes = 24
)

// checkpointer copies the WAL back into the database whenever the writer
// reports it past limit. It ends when quit is closed.
type checkpointer struct {
	db    *sql.DB // one connection, the checkpointer's own
	w     *writer
	frame int64 // bytes per WAL frame
	quit  <-chan struct{}
}

func (c *checkpointer) run() {
	for {
		select {
		case <-c.quit:
			return
		case <-c.w.walFull:
		}
		if err := c.round(); err != nil {
			c.w.log.Warn("sqlitestore: checkpoint", "err", err)
		}
		// A commit made during the round may have asked for another; the
		// WAL it saw is the one just copied, which starts over at the
		// writer's next commit.
		select {
		case <-c.w.walFull:
		default:
		}
	}
}

// round is one checkpoint: passes beside the writer, then the tail by the
// writer.
func (c *checkpointer) round() error {
	ctx := context.Background()
	for range maxPasses {
		var busy, frames, copied int64
		if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
			return fmt.Errorf("background pass: %w", err)
		}
		if c.w.walBytes()-(walHeaderBytes+copied*c.frame) <= tailBytes {
			break
		}
	}
	done := make(chan error, 1)
	select {
	case c.w.tail <- done:
	case <-c.quit:
		return nil
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("tail copied by the writer: %w", err)
		}
	case <-c.quit:
	}
	return nil
}

// copyTail is the writer's part of a checkpoint round, run between two
// transactions: it copies what the checkpointer's passes left, so the next
// transaction starts the WAL over. RESTART, not PASSIVE: it then also waits
// for the reads still using the WAL to end (readers that begin after the
// copy read the database file alone); with reads going on all the time, a
// PASSIVE copy almost never left a moment without one, and the WAL went on
// growing. It waits for those reads at most tailWaitMillis (a read of the
// API takes a few milliseconds; the writer's busy timeout, meant for a
// lock another connection holds, would stall every write for seconds
// behind a long one): if one is still going, this round leaves the WAL
// as it is and a later one starts it over.
func (w *writer) copyTail() error {
	w.tailCopies.Add(1)
	ctx := context.Background()
	if _, err := w.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", tailWaitMillis)); err != nil {
		return err
	}
	_, err := w.conn.ExecContext(ctx, "PRAGMA wal_checkpoint(RESTART)")
	if _, rerr := w.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeoutMillis)); err == nil {
		err = rerr
	}
	return err
}

// tailWaitMillis bounds how long copyTail waits for reads on the WAL.
const tailWaitMillis = 50

// walBytes is how much WAL there is since it last started over (0 while
// the writer's WAL file is not found).
func (w *writer) walBytes() int64 {
	f := w.walFile.Load()
	if f == nil || f.closed.Load() {
		if f = findWAL(w.walPath); f == nil {
			return 0
		}
		w.walFile.Store(f)
	}
	return f.end.Load()
}

// checkWAL tells the checkpointer, after a commit, when the WAL is past its
// limit. It never blocks: a round under way will see the WAL as it is.
func (w *writer) checkWAL() {
	if w.walBytes() < w.walLimit {
		return
	}
	select {
	case w.walFull <- struct{}{}:
	default:
	}
}
