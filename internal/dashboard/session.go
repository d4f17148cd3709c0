package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/deploy"
)

// CookieName is the session cookie: HttpOnly, Secure, SameSite=Strict.
const CookieName = "vmssd_session"

// sessionTTL bounds a session's life.
const sessionTTL = 8 * time.Hour

// session is a signed-in browser.
type session struct {
	id       string
	csrf     string
	identity deploy.Identity
	secGen   int64
	created  time.Time
}

// sessions is the in-memory session table (a restart signs everyone out).
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func randToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) create(id deploy.Identity, secGen int64, now time.Time) *session {
	s := &session{id: randToken(), csrf: randToken(), identity: id, secGen: secGen, created: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[string]*session{}
	}
	for k, v := range ss.m { // drop expired ones
		if now.Sub(v.created) > sessionTTL {
			delete(ss.m, k)
		}
	}
	ss.m[s.id] = s
	return s
}

func (ss *sessions) get(r *http.Request, now time.Time) *session {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[c.Value]
	if s == nil || now.Sub(s.created) > sessionTTL {
		return nil
	}
	return s
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	delete(ss.m, id)
	ss.mu.Unlock()
}

// csrfOK checks a form's token against the session's, in constant time.
func (s *session) csrfOK(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) == 1
}

func sessionCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: value, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
}
