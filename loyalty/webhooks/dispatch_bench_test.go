package webhooks_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
	"github.com/loyalty-engine/loyalty/loyalty/webhooks"
)

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDispatch measures the CPU the dispatcher spends per event on a
// log of purchases (two events each: purchase.created, balance.changed,
// of the sizes the API writes) already committed, delivered to a loopback
// receiver that answers 204 (in this process: its CPU is counted too), and
// recorded. It reports cpu-µs/event (the whole process) and events/s.
func BenchmarkDispatch(b *testing.B) {
	for _, dialect := range loyaltytest.Dialects(b) {
		b.Run(dialect, func(b *testing.B) {
			store := loyaltytest.MustOpen(b, dialect)
			svc := loyalty.NewService(store)
			stop := svc.StartSequencer(context.Background(), func(error) {})
			defer stop()
			hooks := webhooks.NewService(svc)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var got atomic.Int64
			srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
				got.Add(1)
				ctx.SetStatusCode(fasthttp.StatusNoContent)
			}}
			go func() { _ = srv.Serve(ln) }()
			defer func() { _ = srv.Shutdown() }()
			url := "http://" + ln.Addr().String() + "/hook"
			w, _, err := hooks.Create(context.Background(), webhooks.Input{URL: &url, Events: []string{"*"}}, loyalty.IdempotencyKey{})
			if err != nil {
				b.Fatal(err)
			}
			n := max(b.N, 1000)
			n += n % 2
			purchase := `{"id":"0190c0de-0000-7000-8000-%012d","external_id":"r-%d","store_id":"s1","occurred_at":"2026-12-02T06:00:00Z",` +
				`"amount":"42.50","currency":"EUR","points":42,"status":"posted","lines":[{"sku":"A1","qty":1,"amount":"42.50"}],` +
				`"balance":{"member_id":"m%d","available":%d,"pending":0,"lifetime":%d,"tier":"silver","version":%d}}`
			balance := `{"member_id":"m%d","available":%d,"pending":0,"lifetime":%d,"tier":"silver","version":%d}`
			now := time.Now().UTC()
			for i := 0; i < n; i += 200 {
				var q strings.Builder
				var args []any
				q.WriteString("INSERT INTO events (type, member_id, occurred_at, data) VALUES ")
				for j := i; j < min(i+200, n); j += 2 {
					if j > i {
						q.WriteString(", ")
					}
					q.WriteString("(?, ?, ?, ?), (?, ?, ?, ?)")
					m := fmt.Sprintf("m%d", j%2000)
					args = append(args, loyalty.EventPurchaseCreated, m, now, fmt.Sprintf(purchase, j, j, j%2000, j, j, j),
						loyalty.EventBalanceChanged, m, now, fmt.Sprintf(balance, j%2000, j, j, j))
				}
				if err := store.DB().Exec(q.String(), args...).Error; err != nil {
					b.Fatal(err)
				}
			}
			for h, _ := svc.EventsHead(context.Background()); h < int64(n); h, _ = svc.EventsHead(context.Background()) {
				time.Sleep(10 * time.Millisecond)
			}
			cfg := webhooks.Config{Poll: 50 * time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			b.ResetTimer()
			c0, t0 := processCPU(), time.Now()
			go func() {
				defer close(done)
				_ = webhooks.NewDispatcher(hooks, cfg).Run(ctx)
			}()
			for {
				var rows int64
				if got.Load() >= int64(n) {
					if err := store.DB().Raw(`SELECT (SELECT count(*) FROM webhook_deliveries WHERE webhook_id = ?)
						+ (SELECT coalesce(sum(events), 0) FROM webhook_delivered WHERE webhook_id = ?)`, w.ID, w.ID).
						Scan(&rows).Error; err != nil {
						b.Fatal(err)
					}
				}
				if rows >= int64(n) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			el, cpu := time.Since(t0), processCPU()-c0
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/event")
			b.ReportMetric(float64(n)/el.Seconds(), "events/s")
		})
	}
}
