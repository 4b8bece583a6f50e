package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/loyalty-engine/loyalty/api/problem"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// Imports (§15): POST /v1/imports takes a CSV body of up to 1 GiB, far
// over the 1 MiB every other route accepts. Fiber reads a body whole
// before the handler runs, and its streaming mode, being per server, would
// take from every other route the refusal of an oversized body from its
// announced length. So the body of this one route is left on the
// connection when it is over 1 MiB or chunked: importBodyHeader, when the
// headers arrive, records its length and makes fasthttp read none of it; the handler authenticates and
// begins the import as any handler does, then takes the connection over,
// copies the body to a temporary file as it arrives (memory does not grow
// with it), answers 202 and closes the connection, and the import runs in
// the background from the file, its progress in GET /v1/imports/{id}.

// MaxImportBytes is the largest import body accepted.
const MaxImportBytes = 1 << 30

// importLengthHeader carries, from importBodyHeader to the handler, the
// body's announced length ("chunked" for a chunked body). Whatever a
// client sends under this name is replaced on the import route and
// ignored elsewhere.
const importLengthHeader = "X-Loyalty-Import-Length"

// importIdle bounds the wait for the next bytes of an import's body.
const importIdle = 60 * time.Second

// isImportPost is whether a request is POST /v1/imports.
func isImportPost(method, uri []byte) bool {
	path, _, _ := bytes.Cut(uri, []byte("?"))
	return string(method) == fiber.MethodPost && (string(path) == "/v1/imports" || string(path) == "/v1/imports/")
}

// importBodyHeader is the server's HeaderReceived: on POST /v1/imports it
// keeps the body on the connection for the handler (see above).
func importBodyHeader(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if !isImportPost(h.Method(), h.RequestURI()) {
		h.Del(importLengthHeader)
		return fasthttp.RequestConfig{}
	}
	length := "chunked"
	if n := h.ContentLength(); n >= 0 && n <= BodyLimit {
		// A small file is read as any body is, and imported from memory.
		h.Del(importLengthHeader)
		return fasthttp.RequestConfig{}
	} else if n >= 0 {
		length = strconv.Itoa(n)
	}
	h.Set(importLengthHeader, length)
	h.SetContentLength(0)
	return fasthttp.RequestConfig{}
}

func importOptions(c *fiber.Ctx) (loyalty.ImportOptions, error) {
	opts := loyalty.ImportOptions{Kind: c.Query("kind")}
	for name, p := range map[string]*bool{"dry_run": &opts.DryRun, "earn": &opts.Earn} {
		if v := c.Query(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return opts, loyalty.Invalidf(name, "must be true or false")
			}
			*p = b
		}
	}
	return opts, nil
}

func (s *server) postImport(c *fiber.Ctx) error {
	length := c.Get(importLengthHeader)
	if length != "" {
		// The body was not read: whatever this request answers, the
		// connection cannot serve another.
		c.Context().SetConnectionClose()
	}
	size := int64(-1)
	if length != "" && length != "chunked" {
		n, err := strconv.ParseInt(length, 10, 64)
		if err != nil {
			return loyalty.Errorf(loyalty.Malformed, "malformed", "bad Content-Length")
		}
		if n > MaxImportBytes {
			return loyalty.Errorf(loyalty.TooLarge, "body_too_large", "an import file is at most 1 GiB")
		}
		size = n
	}
	opts, err := importOptions(c)
	if err != nil {
		return err
	}
	var inMemory []byte
	if length == "" {
		// A body of at most 1 MiB with its length: fasthttp read it as for
		// any route.
		inMemory = bytes.Clone(c.Body())
	}
	imp, err := s.svc.BeginImport(c.UserContext(), opts)
	if err != nil {
		return err
	}
	if length == "" {
		lines := &lineCounter{}
		_, _ = lines.Write(inMemory)
		_ = s.svc.SetImportTotal(c.UserContext(), imp.ID, lines.rows())
		go s.runImport(imp.ID, bytes.NewReader(inMemory), func() {})
		c.Location("/v1/imports/" + imp.ID)
		return c.Status(http.StatusAccepted).JSON(map[string]string{"id": imp.ID, "kind": imp.Kind, "status": imp.Status})
	}
	requestID := requestID(c)
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(conn net.Conn) { s.receiveImport(conn, imp, size, requestID) })
	return nil
}

// runImport runs the import id from r in the background, then done.
func (s *server) runImport(id string, r io.Reader, done func()) {
	defer done()
	if _, err := s.svc.RunImport(context.Background(), id, r); err != nil {
		s.log.Error("import failed", "import", id, "error", err.Error())
	}
}

// receiveImport reads the body of import imp from conn (size bytes, or
// chunked when size is -1) into a temporary file, answers, and runs the
// import from the file in the background.
func (s *server) receiveImport(conn net.Conn, imp loyalty.Import, size int64, requestID string) {
	ctx := context.Background()
	var body io.Reader = &idleReader{conn: conn}
	if size >= 0 {
		body = io.LimitReader(body, size)
	} else {
		body = httputil.NewChunkedReader(bufio.NewReader(body))
	}
	f, err := os.CreateTemp("", "loyalty-import-*.csv")
	if err != nil {
		s.log.Error("import: temporary file", "import", imp.ID, "error", err.Error())
		_ = s.svc.FailImport(ctx, imp.ID, "the engine could not store the file")
		writeRawProblem(conn, loyalty.Errorf(loyalty.Internal, "internal", "internal error"), requestID)
		return
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	lines := &lineCounter{}
	// The import's heartbeat moves while its file arrives, so that it is
	// not taken for one whose process stopped.
	beat := time.NewTicker(10 * time.Second)
	received := make(chan struct{})
	go func() {
		for {
			select {
			case <-beat.C:
				_ = s.svc.TouchImport(ctx, imp.ID)
			case <-received:
				return
			}
		}
	}()
	n, err := io.Copy(io.MultiWriter(f, lines), io.LimitReader(body, MaxImportBytes+1))
	beat.Stop()
	close(received)
	switch {
	case err == nil && size >= 0 && n < size:
		err = io.ErrUnexpectedEOF
	case err == nil && n > MaxImportBytes:
		cleanup()
		_ = s.svc.FailImport(ctx, imp.ID, "the file is over 1 GiB")
		writeRawProblem(conn, loyalty.Errorf(loyalty.TooLarge, "body_too_large", "an import file is at most 1 GiB"), requestID)
		return
	}
	if err != nil {
		cleanup()
		_ = s.svc.FailImport(ctx, imp.ID, "the file did not arrive whole: "+err.Error())
		writeRawProblem(conn, loyalty.Errorf(loyalty.Malformed, "malformed", "the body did not arrive whole"), requestID)
		return
	}
	if rows := lines.rows(); rows > 0 {
		_ = s.svc.SetImportTotal(ctx, imp.ID, rows)
	}
	body202, _ := json.Marshal(map[string]string{"id": imp.ID, "kind": imp.Kind, "status": imp.Status})
	writeRaw(conn, http.StatusAccepted, fiber.MIMEApplicationJSON, body202, requestID, "/v1/imports/"+imp.ID)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		_ = s.svc.FailImport(ctx, imp.ID, "the engine could not read the stored file")
		return
	}
	go s.runImport(imp.ID, bufio.NewReaderSize(f, 64<<10), cleanup)
}

// idleReader reads from conn, each read given importIdle to bring bytes.
type idleReader struct{ conn net.Conn }

func (r *idleReader) Read(p []byte) (int, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(importIdle))
	return r.conn.Read(p)
}

// lineCounter counts the lines written to it, for the expected rows of a
// file before it is parsed (a quoted field with a line break makes the
// guess high; the import's end sets the true count).
type lineCounter struct {
	n    int64
	last byte
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.n += int64(bytes.Count(p, []byte{'\n'}))
	if len(p) > 0 {
		l.last = p[len(p)-1]
	}
	return len(p), nil
}

// rows is the lines after the header.
func (l *lineCounter) rows() int64 {
	n := l.n
	if l.last != '\n' && l.last != 0 {
		n++
	}
	return max(n-1, 0)
}

// writeRaw writes a whole response on a connection taken over from the
// server, which then closes.
func writeRaw(conn net.Conn, status int, contentType string, body []byte, requestID, location string) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n", status, http.StatusText(status),
		contentType, len(body))
	if requestID != "" {
		fmt.Fprintf(&b, "X-Request-ID: %s\r\n", requestID)
	}
	if location != "" {
		fmt.Fprintf(&b, "Location: %s\r\n", location)
	}
	b.WriteString("\r\n")
	b.Write(body)
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = conn.Write(b.Bytes())
}

func writeRawProblem(conn net.Conn, e *loyalty.Error, requestID string) {
	status := problem.Status(e.Code)
	p := Problem{Type: "/problems/" + e.Reason, Title: http.StatusText(status), Status: status, Detail: e.Message,
		Instance: "/v1/imports", Code: e.Reason, Errors: e.Fields}
	body, _ := json.Marshal(p)
	writeRaw(conn, status, "application/problem+json", body, requestID, "")
}

func (s *server) getImport(c *fiber.Ctx) error {
	imp, err := s.svc.GetImport(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(imp)
}

func (s *server) importErrors(c *fiber.Ctx) error {
	id := c.Params("id")
	// An unknown import is a 404, before the stream starts.
	if _, err := s.svc.GetImport(c.UserContext(), id); err != nil {
		return err
	}
	ctx := c.UserContext()
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="import-`+id+`-errors.csv"`)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		if err := s.svc.WriteImportErrors(ctx, id, w); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			s.log.Error("import errors export", "import", id, "error", err.Error())
		}
		_ = w.Flush()
	})
	return nil
}
