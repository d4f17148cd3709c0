package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/vmssd/vmssd/internal/errs"
)

// Linked templates and parameter files (templateLink.uri,
// parametersLink.uri) are fetched by the server: https only, at most
// maxTemplateBody bytes, within linkTimeout, at most 5 redirects (each
// https), and never from an address of this machine or its private networks
// (loopback, link-local, private, unspecified, multicast): a template link
// must not be a way to make vmssd call itself or its neighbours with its
// own network position. The check is made on the address actually dialed,
// so a name that resolves differently later (DNS rebinding) gains nothing.

const linkTimeout = 15 * time.Second

// allowPrivateLinks lets this package's tests fetch from their loopback
// TLS server.
var allowPrivateLinks = false

func blockedAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() ||
		// 100.64.0.0/10 carrier-grade NAT, and 0.0.0.0/8.
		netip.MustParsePrefix("100.64.0.0/10").Contains(a) || netip.MustParsePrefix("0.0.0.0/8").Contains(a)
}

var errBlockedAddr = errors.New("address not allowed for template links")

func linkClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		if !allowPrivateLinks && blockedAddr(ap.Addr()) {
			return fmt.Errorf("%w: %s", errBlockedAddr, ap.Addr())
		}
		return nil
	}}
	tr := &http.Transport{DialContext: d.DialContext, TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: 10 * time.Second, MaxResponseHeaderBytes: 64 << 10}
	return &http.Client{Transport: tr, Timeout: linkTimeout, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to a non-https URL %q", req.URL.Redacted())
		}
		return nil
	}}
}

// fetchLink reads a template or parameters link.
func (s *Server) fetchLink(ctx context.Context, uri, target string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil || uri == "" || u.Host == "" {
		return nil, errs.New(errs.Invalid, "InvalidContentLink", "The content link '%s' is not a valid absolute URI.", uri).WithTarget(target)
	}
	if u.Scheme != "https" {
		return nil, errs.New(errs.Invalid, "InvalidContentLink", "The content link '%s' must use https: vmssd fetches template and parameters links over https only.", u.Redacted()).WithTarget(target)
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil && !allowPrivateLinks && blockedAddr(a) {
		return nil, errs.New(errs.Invalid, "InvalidContentLink", "The content link '%s' names a loopback, private or link-local address, which vmssd does not fetch from.", u.Redacted()).WithTarget(target)
	}
	ctx, cancel := context.WithTimeout(ctx, linkTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, errs.New(errs.Invalid, "InvalidContentLink", "The content link '%s' is not valid.", u.Redacted()).WithTarget(target)
	}
	resp, err := linkClient().Do(req)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, errBlockedAddr) {
			msg = "its host resolves to a loopback, private or link-local address, which vmssd does not fetch from"
		}
		return nil, errs.New(errs.Invalid, "InvalidContentLink", "Unable to download deployment content from '%s': %s.", u.Redacted(), msg).WithTarget(target)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errs.New(errs.Invalid, "InvalidContentLink", "Unable to download deployment content from '%s'. The status code is '%d'.", u.Redacted(), resp.StatusCode).WithTarget(target)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTemplateBody+1))
	if err != nil {
		return nil, errs.New(errs.Invalid, "InvalidContentLink", "Unable to download deployment content from '%s': %s.", u.Redacted(), err).WithTarget(target)
	}
	if len(b) > maxTemplateBody {
		return nil, errs.New(errs.Invalid, "InvalidContentLink", "The content at '%s' is larger than %d bytes.", u.Redacted(), maxTemplateBody).WithTarget(target)
	}
	return b, nil
}
