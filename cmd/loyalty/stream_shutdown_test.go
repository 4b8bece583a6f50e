package main

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loyalty-engine/loyalty/api"
	"github.com/loyalty-engine/loyalty/loyalty"
)

// TestSIGTERMEndsBalanceStreams: `loyalty serve` with open balance
// streams stops cleanly on SIGTERM (exit status 0, not the shutdown's
// timeout), and the streams end.
func TestSIGTERMEndsBalanceStreams(t *testing.T) {
	e := newEngine(t, sqliteURL(t))
	e.start()
	w := newWorkload(t, e)
	w.setup(1)
	member := w.members[0]
	tok, err := api.SignToken(api.AuthConfig{Secret: []byte(testSecret)}, loyalty.RoleMember, member, "", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var bodies []io.ReadCloser
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", e.base()+"/v1/members/"+member+"/balance/stream", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("stream: %s", res.Status)
		}
		defer res.Body.Close()
		// Wait for the first balance: the stream is open on the server.
		br := bufio.NewReader(res.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended before its first balance: %v", err)
			}
			if strings.HasPrefix(line, "event: balance") {
				break
			}
		}
		bodies = append(bodies, io.NopCloser(br))
	}
	cmd := e.cmd
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("loyalty serve did not exit after SIGTERM")
	}
	e.cmd = nil
	if !cmd.ProcessState.Success() {
		t.Fatalf("loyalty serve exited with %v after SIGTERM with open streams", cmd.ProcessState)
	}
	for i, b := range bodies {
		if _, err := io.Copy(io.Discard, b); err != nil {
			t.Errorf("stream %d: %v", i, err)
		}
	}
}
