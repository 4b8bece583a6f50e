package api

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// csvRows is the RowWriter of a streamed CSV answer: rows go through a CSV
// writer into the response's stream, and each Flush pushes them to the
// client with a fresh write deadline (the server's was set once for the
// whole answer, which a large export outlasts).
type csvRows struct {
	cw      *csv.Writer
	bw      *bufio.Writer
	conn    net.Conn
	timeout time.Duration
	done    <-chan struct{}
}

func (r *csvRows) Write(row []string) error { return r.cw.Write(row) }

func (r *csvRows) Flush() error {
	r.cw.Flush()
	if err := r.cw.Error(); err != nil {
		return err
	}
	select {
	case <-r.done:
		return errors.New("the server is shutting down")
	default:
	}
	if r.conn != nil && r.timeout > 0 {
		_ = r.conn.SetWriteDeadline(time.Now().Add(r.timeout))
	}
	return r.bw.Flush()
}

// exportFailed is the last row of an export that stopped on an error after
// its first rows were sent (the status cannot change any more): a file
// that ends with it is visibly incomplete rather than quietly short.
var exportFailed = []string{"#export incomplete: the engine failed while reading; see its log"}

// streamCSV answers with a CSV attachment named filename whose rows export
// writes, as it reads them. Everything that can be refused (role, query)
// must be checked before: once streaming, the status is 200.
func (s *server) streamCSV(c *fiber.Ctx, filename string, export func(ctx context.Context, w loyalty.RowWriter) error) error {
	ctx := c.UserContext()
	rc := c.Context()
	route, id := routePath(c), requestID(c)
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+filename+`"`)
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Accel-Buffering", "no")
	conn, done, timeout := rc.Conn(), rc.Done(), s.writeTimeout
	rc.SetBodyStreamWriter(func(w *bufio.Writer) {
		rows := &csvRows{cw: csv.NewWriter(w), bw: w, conn: conn, timeout: timeout, done: done}
		if err := export(ctx, rows); err != nil {
			s.log.Error("export failed", "request_id", id, "route", route, "error", err.Error())
			_ = rows.Write(exportFailed)
			_ = rows.Flush()
		}
	})
	return nil
}

// exportMembers streams every member with its balance and tier (§15).
func (s *server) exportMembers(c *fiber.Ctx) error {
	p := principal(c)
	return s.streamCSV(c, "members.csv", func(ctx context.Context, w loyalty.RowWriter) error {
		return s.svc.ExportMembers(ctx, p, w)
	})
}

// exportLedger streams the ledger entries that occurred in
// ?from=&to= (§15), for accounting.
func (s *server) exportLedger(c *fiber.Ctx) error {
	r, err := s.ledgerRange(c)
	if err != nil {
		return err
	}
	p := principal(c)
	name := "ledger-" + r.From.UTC().Format("20060102T150405Z") + "-" + r.To.UTC().Format("20060102T150405Z") + ".csv"
	return s.streamCSV(c, name, func(ctx context.Context, w loyalty.RowWriter) error {
		return s.svc.ExportLedger(ctx, p, r, w)
	})
}

// ledgerRange reads the ledger export's required from and to (see
// loyalty.ParseLedgerRange) in the program's time zone.
func (s *server) ledgerRange(c *fiber.Ctx) (loyalty.LedgerRange, error) {
	prog, err := s.svc.Program(c.UserContext())
	if err != nil {
		return loyalty.LedgerRange{}, err
	}
	from, err := query(c, "from")
	if err != nil {
		return loyalty.LedgerRange{}, err
	}
	to, err := query(c, "to")
	if err != nil {
		return loyalty.LedgerRange{}, err
	}
	return loyalty.ParseLedgerRange(from, to, prog.Location())
}
