package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
)

// rawStmt is a statement prepared on the driver's own connection and run
// without database/sql: for the INSERT of every notification, whose
// argument conversion in database/sql (a fresh []driver.NamedValue per
// call, each argument checked) was a sixth of the bytes the server
// allocated at 25,000 notifications/s. It is used only inside conn.Raw, as
// database/sql requires of anything taken from the driver's connection,
// and only by the writer goroutine.
type rawStmt struct {
	conn *sql.Conn
	st   execStmt
	args []driver.NamedValue // the current call's, reused
	run  func(any) error     // runs st with args; made once
}

// execStmt is a driver statement that executes with a context.
type execStmt interface {
	driver.Stmt
	driver.StmtExecContext
}

func prepareRaw(ctx context.Context, conn *sql.Conn, query string) (*rawStmt, error) {
	r := &rawStmt{conn: conn}
	err := conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("driver connection cannot prepare with a context")
		}
		st, err := pc.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		es, ok := st.(execStmt)
		if !ok {
			_ = st.Close()
			return errors.New("driver statement cannot execute with a context")
		}
		r.st = es
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", query, err)
	}
	r.run = func(any) error {
		_, err := r.st.ExecContext(context.Background(), r.args)
		return err
	}
	return r, nil
}

// execArgs runs the statement with args, each already a driver.Value
// (string, int64, []byte or nil): nothing converts them on the way.
func (r *rawStmt) execArgs(args ...any) error {
	r.args = r.args[:0]
	for i, v := range args {
		r.args = append(r.args, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	err := r.conn.Raw(r.run)
	clear(r.args) // keep no notification's strings alive
	return err
}

func (r *rawStmt) close() error {
	return r.conn.Raw(func(any) error { return r.st.Close() })
}
