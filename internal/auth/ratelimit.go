package auth

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of RateLimit.
const (
	// DefaultTokenRatePerAddress is how many token requests per second one
	// remote address may make, sustained.
	DefaultTokenRatePerAddress = 20
	// DefaultTokenBurstPerAddress is the burst allowed above it.
	DefaultTokenBurstPerAddress = 100
	// DefaultTokenRate bounds all token requests together.
	DefaultTokenRate = 200
	// DefaultTokenBurst is the burst allowed above DefaultTokenRate.
	DefaultTokenBurst = 400
	// maxTrackedAddresses bounds the per-address limiters kept; beyond it,
	// new addresses share one limiter.
	maxTrackedAddresses = 10000
)

// RateLimit bounds the token endpoint's request rate, per remote address and
// in total. A refused request gets 429 with an OAuth error body and
// Retry-After. Zero fields take the defaults; a negative PerAddress turns
// the limit off.
type RateLimit struct {
	// PerAddress is the sustained requests per second of one remote IP
	// address. Default DefaultTokenRatePerAddress.
	PerAddress float64
	// PerAddressBurst is the burst per address. Default
	// DefaultTokenBurstPerAddress (at least 1).
	PerAddressBurst int
	// Total is the sustained requests per second of all clients. Default
	// DefaultTokenRate.
	Total float64
	// TotalBurst is the burst of all clients. Default DefaultTokenBurst.
	TotalBurst int
}

// limiter enforces a RateLimit. It is safe for concurrent use.
type limiter struct {
	perAddr  rate.Limit
	burst    int
	total    *rate.Limiter
	overflow *rate.Limiter // shared by addresses beyond maxTrackedAddresses

	mu    sync.Mutex
	addrs map[string]*rate.Limiter
}

// newLimiter returns the limiter of rl, or nil if it is turned off.
func newLimiter(rl RateLimit) *limiter {
	if rl.PerAddress < 0 {
		return nil
	}
	if rl.PerAddress == 0 {
		rl.PerAddress = DefaultTokenRatePerAddress
	}
	if rl.PerAddressBurst <= 0 {
		rl.PerAddressBurst = max(DefaultTokenBurstPerAddress, int(math.Ceil(rl.PerAddress)))
	}
	if rl.Total <= 0 {
		rl.Total = max(DefaultTokenRate, rl.PerAddress)
	}
	if rl.TotalBurst <= 0 {
		rl.TotalBurst = max(DefaultTokenBurst, rl.PerAddressBurst)
	}
	return &limiter{
		perAddr:  rate.Limit(rl.PerAddress),
		burst:    rl.PerAddressBurst,
		total:    rate.NewLimiter(rate.Limit(rl.Total), rl.TotalBurst),
		overflow: rate.NewLimiter(rate.Limit(rl.PerAddress), rl.PerAddressBurst),
		addrs:    map[string]*rate.Limiter{},
	}
}

// reserve takes a token for a request from remote (host:port or host) at
// now. It returns 0 if the request may go on, or how long the client should
// wait before retrying.
func (l *limiter) reserve(remote string, now time.Time) time.Duration {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	per := l.forAddress(host, now)
	r := per.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 || !r.OK() {
		r.CancelAt(now)
		return max(d, time.Second)
	}
	t := l.total.ReserveN(now, 1)
	if d := t.DelayFrom(now); d > 0 || !t.OK() {
		t.CancelAt(now)
		r.CancelAt(now)
		return max(d, time.Second)
	}
	return 0
}

func (l *limiter) forAddress(host string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.addrs[host]; ok {
		return lim
	}
	if len(l.addrs) >= maxTrackedAddresses {
		// Forget addresses whose bucket has refilled: they are idle.
		for a, lim := range l.addrs {
			if lim.TokensAt(now) >= float64(l.burst) {
				delete(l.addrs, a)
			}
		}
		if len(l.addrs) >= maxTrackedAddresses {
			return l.overflow
		}
	}
	lim := rate.NewLimiter(l.perAddr, l.burst)
	l.addrs[host] = lim
	return lim
}

// limit wraps next with the limiter (nil: no limit).
func (h *handler) limit(next http.HandlerFunc) http.HandlerFunc {
	l := h.iss.limiter
	if l == nil {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if wait := l.reserve(r.RemoteAddr, h.iss.now()); wait > 0 {
			secs := int64(math.Ceil(wait.Seconds()))
			h.iss.log.WarnContext(r.Context(), "token request rate limited", "remote", r.RemoteAddr, "retry_after_s", secs)
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			w.Header().Set("Cache-Control", "no-store")
			writeJSON(w, http.StatusTooManyRequests, &oauthError{Code: errTemporarilyUnavailable,
				Description: "too many token requests; retry after " + strconv.FormatInt(secs, 10) + " second(s)"})
			return
		}
		next(w, r)
	}
}
