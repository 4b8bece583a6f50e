// Package natstest connects tests to the NATS server with JetStream they
// publish to: the project's machines run one on 127.0.0.1:4222.
package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultURL is where tests look for NATS unless LOYALTY_TEST_NATS_URL says
// otherwise.
const DefaultURL = "nats://127.0.0.1:4222"

var (
	once   sync.Once
	url    string
	urlErr error
)

// URL returns the NATS server's URL. The test is skipped when none answers
// with JetStream, unless LOYALTY_TEST_REQUIRE_NATS=1 (CI) makes that a
// failure.
func URL(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		url = os.Getenv("LOYALTY_TEST_NATS_URL")
		if url == "" {
			url = DefaultURL
		}
		nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
		if err != nil {
			urlErr = err
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			urlErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, urlErr = js.AccountInfo(ctx)
	})
	if urlErr != nil {
		if os.Getenv("LOYALTY_TEST_REQUIRE_NATS") == "1" {
			tb.Fatalf("NATS is required (LOYALTY_TEST_REQUIRE_NATS=1) but %s does not answer with JetStream: %v", url, urlErr)
		}
		tb.Skipf("no NATS server with JetStream at %s (LOYALTY_TEST_REQUIRE_NATS=1 makes this a failure): %v", url, urlErr)
	}
	return url
}

// Names returns a stream name and a subject prefix of the test's own, so
// that tests sharing the server never see one another's events; the stream
// is deleted when the test ends.
func Names(tb testing.TB, url string) (stream, subject string) {
	tb.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	stream, subject = "LOYALTY_TEST_"+strings.ToUpper(suffix), "test"+suffix+".loyalty.events"
	tb.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, stream)
	})
	return stream, subject
}

// Msg is one message as the stream stores it.
type Msg struct {
	Seq     uint64
	Subject string
	MsgID   string
	Data    []byte
}

// Messages reads every message of the stream, in stream order; none when
// the stream does not exist.
func Messages(tb testing.TB, url, stream string) []Msg {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []Msg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			tb.Fatal(err)
		}
		out = append(out, Msg{Seq: m.Sequence, Subject: m.Subject, MsgID: m.Header.Get(jetstream.MsgIDHeader), Data: m.Data})
	}
	return out
}

// Count is how many messages the stream holds (0 when it does not exist).
func Count(tb testing.TB, url, stream string) uint64 {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}
