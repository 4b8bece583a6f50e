package webhooks

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestDescribe: the few words a failed attempt records, for the errors of
// either client.
func TestDescribe(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		err  error
		want string
	}{
		{fasthttp.ErrTimeout, "no answer within 10s"},
		{fasthttp.ErrDialTimeout, "no answer within 10s"},
		{&net.OpError{Op: "dial", Err: context.Canceled}, "connection refused or unreachable"},
		{&net.DNSError{Err: "no such host", Name: "x.invalid"}, "the host name does not resolve"},
		{fasthttp.ErrConnectionClosed, "the request failed"},
	} {
		if got := describe(c.err, ctx, 10*time.Second); got != c.want {
			t.Errorf("%v: %q, want %q", c.err, got, c.want)
		}
	}
}
