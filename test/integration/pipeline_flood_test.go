package integration

// A client that pipelines more than pgrecycle buffers before it reads
// (libpq pipeline mode: PostgreSQL's libpq_pipeline uniqviol and
// pipelined_insert tests), reading the replies on another thread as
// libpq does, must not stall. In transaction pooling nothing read the
// server's replies while the client goroutine forwarded a stream that never
// paused at a message boundary: the server blocked writing its replies,
// then pgrecycle blocked writing to the server, for good (found by the
// libpq_pipeline sweep helper).

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestPipelineFloodDoesNotStall(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		_, c := e.rawFrontend(t)
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		// More each way than the sockets between pgrecycle and the
		// server hold (Linux grows them to several MB): 30 MB of Binds,
		// 30 MB of rows.
		const n = 10000
		param := bytes.Repeat([]byte("p"), 3000)
		var flood []byte
		var err error
		flood, err = (&pgproto3.Parse{Query: "SELECT $1::text", ParameterOIDs: []uint32{25}}).Encode(flood)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if flood, err = (&pgproto3.Bind{Parameters: [][]byte{param}}).Encode(flood); err != nil {
				t.Fatal(err)
			}
			if flood, err = (&pgproto3.Execute{}).Encode(flood); err != nil {
				t.Fatal(err)
			}
		}
		if flood, err = (&pgproto3.Sync{}).Encode(flood); err != nil {
			t.Fatal(err)
		}

		type outcome struct {
			rows int
			err  error
		}
		done := make(chan outcome, 1)
		go func() {
			r := bufio.NewReaderSize(c, 64<<10)
			rows := 0
			for {
				typ, body, err := readMessage(r)
				switch {
				case err != nil:
					done <- outcome{rows, err}
					return
				case typ == 'E':
					done <- outcome{rows, fmt.Errorf("server error: %v", errorFields(body))}
					return
				case typ == 'D':
					rows++
				case typ == 'Z':
					done <- outcome{rows, nil}
					return
				}
			}
		}()
		if _, err := c.Write(flood); err != nil {
			t.Fatalf("writing the pipeline (%d kB): %v", len(flood)>>10, err)
		}
		got := <-done
		if got.err != nil || got.rows != n {
			t.Fatalf("pipeline of %d executions: %d rows, %v", n, got.rows, got.err)
		}
	})
}
