package apiserver

import (
	"encoding/base64"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/vmssd/vmssd/internal/errs"
)

// Lists page by store key: a nextLink carries, in $skiptoken, the key
// (relative to the list's prefix) its page starts at, so that a page is read
// from the store without the pages before it, and stays consistent when
// resources before it come and go.

// maxSkipToken bounds a decoded $skiptoken.
const maxSkipToken = 512

// pageStart returns the store key the requested page starts at ("" for the
// first page). valid checks the decoded key relative to prefix.
func pageStart(rc *reqCtx, prefix string, valid func(rel string) bool) (string, error) {
	t := rc.query.Get("$skiptoken")
	if t == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil || len(b) == 0 || len(b) > maxSkipToken || !utf8.Valid(b) || (valid != nil && !valid(string(b))) {
		return "", errs.InvalidParameter("$skiptoken", "The $skiptoken '%s' is not valid.", clip(t))
	}
	return prefix + string(b), nil
}

// pageLink is the nextLink of a page whose successor starts at key next.
func pageLink(r *http.Request, prefix, next string) string {
	q := r.URL.Query()
	q.Set("$skiptoken", base64.RawURLEncoding.EncodeToString([]byte(strings.TrimPrefix(next, prefix))))
	return "https://" + r.Host + r.URL.Path + "?" + q.Encode()
}
