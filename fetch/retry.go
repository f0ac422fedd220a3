package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Retries: which failures are transient, how long a server asked to wait,
// and the backoff between attempts.

// classify decides whether err is worth a retry and how long the server
// asked us to wait.
func (f *Fetcher) classify(err error, status *StatusError) (bool, time.Duration) {
	if status != nil {
		switch {
		case status.Code == http.StatusTooManyRequests, status.Code == http.StatusServiceUnavailable:
			return true, parseRetryAfter(status.RetryAfter, time.Now(), f.maxRetryAfter())
		case status.Code == http.StatusRequestTimeout, status.Code >= 500:
			return true, 0
		default:
			return false, 0
		}
	}
	return isTransient(err), 0
}

// isTransient reports network-level failures that a retry may fix.
func isTransient(err error) bool {
	switch {
	case errors.Is(err, ErrIdleTimeout), errors.Is(err, ErrTruncated):
		return true
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrDigestMismatch), errors.Is(err, ErrRedirect),
		errors.Is(err, ErrBadURL), errors.Is(err, ErrSignature), errors.Is(err, context.Canceled):
		return false
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return !dnsErr.IsNotFound
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// parseRetryAfter reads delay-seconds or an HTTP date, capped at limit.
func parseRetryAfter(v string, now time.Time, limit time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs > int64(limit/time.Second) {
			return limit
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), limit)
}

// backoff is exponential with jitter (between half and all of the step),
// and at least what the server asked for.
func backoff(try int, retryAfter time.Duration) time.Duration {
	step := backoffBase << min(try, 16)
	if step > backoffMax || step <= 0 {
		step = backoffMax
	}
	d := step/2 + rand.N(step/2+1)
	return max(d, retryAfter)
}

func (f *Fetcher) wait(ctx context.Context, d time.Duration) error {
	if f.sleep != nil {
		return f.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
