package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxTokenRequestBytes bounds the body of a token request. Real requests
// (client id, a 43-character secret, a scope and a CAE claims parameter) are
// well under 1 KiB.
const maxTokenRequestBytes = 16 << 10

// adfsTenant is the tenant path segment that puts MSAL in AD FS mode.
const adfsTenant = "adfs"

// oidcScopes are the scopes MSAL adds to every request; they carry no
// resource and are ignored.
var oidcScopes = map[string]bool{"openid": true, "offline_access": true, "profile": true, "email": true}

// OAuth 2.0 error codes (RFC 6749 §5.2) used by the token endpoint.
const (
	errInvalidRequest       = "invalid_request"
	errInvalidClient        = "invalid_client"
	errUnsupportedGrantType = "unsupported_grant_type"
	errInvalidScope         = "invalid_scope"
	errServerError          = "server_error"
	// errTemporarilyUnavailable answers a rate-limited request (429).
	errTemporarilyUnavailable = "temporarily_unavailable"
)

// Handler returns the HTTP handler of the authority endpoints (see the
// package documentation), authenticating clients with src. Mount it at the
// root of a TLS listener: MSAL builds the discovery URL from the authority
// host, and discovery documents advertise https URLs on the request's Host.
func (i *Issuer) Handler(src Source) http.Handler {
	h := &handler{iss: i, src: src}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", h.discoveryV2)
	mux.HandleFunc("GET /{tenant}/.well-known/openid-configuration", h.discoveryV1)
	mux.HandleFunc("GET /{authority}/{tenant}/.well-known/openid-configuration", h.discoveryUnderADFS)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", h.keys)
	mux.HandleFunc("GET /{tenant}/discovery/keys", h.keys)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", h.limit(h.token))
	mux.HandleFunc("POST /{tenant}/oauth2/token", h.limit(h.token))
	return mux
}

type handler struct {
	iss *Issuer
	src Source
}

// tenant returns the validated tenant path segment of r, writing a 404 if it
// is not one azidentity would send.
func tenant(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := r.PathValue("tenant")
	if !validTenant(t) {
		http.NotFound(w, r)
		return "", false
	}
	return t, true
}

// validTenant matches azidentity's tenant id rule, [A-Za-z0-9.-]+.
func validTenant(t string) bool {
	if t == "" || t == "." || t == ".." {
		return false
	}
	for _, c := range t {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// baseURL is https://<Host of r>. MSAL requires the discovery document's
// issuer to have the authority's scheme and host, so the documents are
// built from what the client used to reach us (we may have many names).
func baseURL(r *http.Request) (string, bool) {
	host := r.Host
	u, err := url.Parse("https://" + host)
	if host == "" || err != nil || u.Host != host || u.User != nil || u.Path != "" || strings.ContainsAny(host, " \t\"\\") {
		return "", false
	}
	return "https://" + host, true
}

type discoveryDocument struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	TenantRegionScope                 *string  `json:"tenant_region_scope"`
}

func newDiscoveryDocument(issuer, authorize, token, jwks string) discoveryDocument {
	return discoveryDocument{
		Issuer:                            issuer,
		AuthorizationEndpoint:             authorize,
		TokenEndpoint:                     token,
		JWKSURI:                           jwks,
		GrantTypesSupported:               []string{"client_credentials"},
		ResponseTypesSupported:            []string{"token"},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{signingAlg},
		TokenEndpointAuthMethodsSupported: []string{"client_secret_post", "client_secret_basic"},
		ScopesSupported:                   []string{"openid", "profile", "offline_access"},
	}
}

// discoveryV2 serves Entra v2 discovery: MSAL's AAD-mode request.
func (h *handler) discoveryV2(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant(w, r)
	if !ok {
		return
	}
	base, ok := baseURL(r)
	if !ok {
		http.Error(w, "bad Host header", http.StatusBadRequest)
		return
	}
	p := base + "/" + t
	writeJSON(w, http.StatusOK, newDiscoveryDocument(
		p+"/v2.0", p+"/oauth2/v2.0/authorize", p+"/oauth2/v2.0/token", p+"/discovery/v2.0/keys"))
}

// discoveryV1 serves v1 discovery, and AD FS discovery for tenant "adfs"
// (MSAL's ADFS-mode request).
func (h *handler) discoveryV1(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant(w, r)
	if !ok {
		return
	}
	base, ok := baseURL(r)
	if !ok {
		http.Error(w, "bad Host header", http.StatusBadRequest)
		return
	}
	p := base + "/" + t
	issuer := p + "/"
	if strings.EqualFold(t, adfsTenant) {
		issuer = p // AD FS's issuer is https://host/adfs
	}
	writeJSON(w, http.StatusOK, newDiscoveryDocument(
		issuer, p+"/oauth2/authorize", p+"/oauth2/token", p+"/discovery/keys"))
}

// discoveryUnderADFS answers az's tenant resolution when the cloud's
// login endpoint is the AD FS authority (https://host/adfs): "az login
// --tenant NAME" fetches {loginEndpoint}/NAME/.well-known/openid-configuration
// for any non-GUID NAME and takes the tenant from the issuer. vmssd has one
// directory, so every NAME resolves to AD FS (issuer https://host/adfs, tenant
// "adfs"), as it does on Azure Stack Hub with AD FS.
func (h *handler) discoveryUnderADFS(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.PathValue("authority"), adfsTenant) {
		http.NotFound(w, r)
		return
	}
	if _, ok := tenant(w, r); !ok {
		return
	}
	base, ok := baseURL(r)
	if !ok {
		http.Error(w, "bad Host header", http.StatusBadRequest)
		return
	}
	p := base + "/" + adfsTenant
	writeJSON(w, http.StatusOK, newDiscoveryDocument(p, p+"/oauth2/authorize", p+"/oauth2/token", p+"/discovery/keys"))
}

func (h *handler) keys(w http.ResponseWriter, r *http.Request) {
	if _, ok := tenant(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(h.iss.JWKS())
}

// tokenResponse is the successful token response (RFC 6749 §5.1, with
// Entra's ext_expires_in).
type tokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
}

// oauthError is an error response (RFC 6749 §5.2).
type oauthError struct {
	status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func badRequest(code, format string, args ...any) *oauthError {
	return &oauthError{status: http.StatusBadRequest, Code: code, Description: fmt.Sprintf(format, args...)}
}

// token serves the client_credentials grant.
func (h *handler) token(w http.ResponseWriter, r *http.Request) {
	if _, ok := tenant(w, r); !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	resp, clientID, oerr := h.grant(w, r)
	if oerr != nil {
		if oerr.status < http.StatusInternalServerError {
			h.iss.log.InfoContext(r.Context(), "token request refused",
				slog.String("client_id", clientID), slog.String("error", oerr.Code),
				slog.String("description", oerr.Description), slog.String("remote", r.RemoteAddr))
		}
		if oerr.status == http.StatusUnauthorized && strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
			w.Header().Set("WWW-Authenticate", `Basic realm="vmssd"`)
		}
		writeJSON(w, oerr.status, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// grant authenticates the client of a token request and issues its token.
// It returns the client id, if one was given, for logs.
func (h *handler) grant(w http.ResponseWriter, r *http.Request) (tokenResponse, string, *oauthError) {
	ctx := r.Context()
	clientID, secret, audience, oerr := parseTokenRequest(w, r)
	if oerr != nil {
		return tokenResponse{}, clientID, oerr
	}
	// Authenticate before looking at the audience, so that unauthenticated
	// callers learn nothing about the configuration.
	p, err := h.src.Authenticate(ctx, clientID, secret)
	switch {
	case errors.Is(err, ErrInvalidClient):
		return tokenResponse{}, clientID, &oauthError{status: http.StatusUnauthorized, Code: errInvalidClient,
			Description: "invalid client id or secret"}
	case err != nil:
		h.iss.log.ErrorContext(ctx, "token request: credential source failed",
			slog.String("client_id", clientID), slog.Any("error", err))
		return tokenResponse{}, clientID, &oauthError{status: http.StatusInternalServerError, Code: errServerError,
			Description: "credentials cannot be checked now"}
	}
	aud, ok := h.iss.canonicalAudience(audience)
	if !ok {
		return tokenResponse{}, clientID, badRequest(errInvalidScope, "unknown resource %q", audience)
	}
	now := h.iss.now()
	token, exp, err := h.iss.Issue(p, aud, now)
	if err != nil {
		h.iss.log.ErrorContext(ctx, "token request: issue failed",
			slog.String("client_id", clientID), slog.Any("error", err))
		return tokenResponse{}, clientID, &oauthError{status: http.StatusInternalServerError, Code: errServerError,
			Description: "token cannot be issued"}
	}
	h.iss.log.InfoContext(ctx, "token issued",
		slog.String("client_id", p.ClientID), slog.String("role", string(p.Role)), slog.String("audience", aud))
	lifetime := int64(exp.Sub(now).Seconds())
	return tokenResponse{TokenType: "Bearer", ExpiresIn: lifetime, ExtExpiresIn: lifetime, AccessToken: token}, clientID, nil
}

// parseTokenRequest reads a client_credentials token request and returns
// the client's credentials and the requested audience.
func parseTokenRequest(w http.ResponseWriter, r *http.Request) (clientID, secret, audience string, oerr *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return "", "", "", badRequest(errInvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenRequestBytes)
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return "", "", "", &oauthError{status: http.StatusRequestEntityTooLarge, Code: errInvalidRequest,
				Description: fmt.Sprintf("request body larger than %d bytes", maxTokenRequestBytes)}
		}
		return "", "", "", badRequest(errInvalidRequest, "malformed form body")
	}
	form := r.PostForm // never the query string: secrets do not belong in URLs
	for k, v := range form {
		if len(v) > 1 {
			return "", "", "", badRequest(errInvalidRequest, "parameter %q repeated", k)
		}
	}

	switch gt := form.Get("grant_type"); gt {
	case "":
		return "", "", "", badRequest(errInvalidRequest, "missing grant_type")
	case "client_credentials":
	default:
		return "", "", "", badRequest(errUnsupportedGrantType, "grant_type %q is not supported; use client_credentials", gt)
	}

	clientID, secret = form.Get("client_id"), form.Get("client_secret")
	if user, pass, ok := r.BasicAuth(); ok {
		if secret != "" {
			return "", "", "", badRequest(errInvalidRequest, "client authenticated both with HTTP Basic and client_secret")
		}
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
		if u, err := url.QueryUnescape(user); err == nil {
			user = u
		}
		if p, err := url.QueryUnescape(pass); err == nil {
			pass = p
		}
		if clientID != "" && clientID != user {
			return "", "", "", badRequest(errInvalidRequest, "client_id differs from the HTTP Basic user")
		}
		clientID, secret = user, pass
	}
	if form.Has("client_assertion") {
		return clientID, "", "", &oauthError{status: http.StatusUnauthorized, Code: errInvalidClient,
			Description: "client assertions are not supported; use a client secret"}
	}
	if clientID == "" || secret == "" {
		return clientID, "", "", &oauthError{status: http.StatusUnauthorized, Code: errInvalidClient,
			Description: "missing client_id or client_secret"}
	}

	scope, resource := form.Get("scope"), form.Get("resource")
	switch {
	case scope != "" && resource != "":
		return clientID, "", "", badRequest(errInvalidRequest, "give scope or resource, not both")
	case scope != "":
		audience, oerr = audienceFromScope(scope)
		if oerr != nil {
			return clientID, "", "", oerr
		}
	case resource != "":
		audience = resource
	default:
		return clientID, "", "", badRequest(errInvalidRequest, "missing scope (\"<resource>/.default\") or resource")
	}
	return clientID, secret, audience, nil
}

// audienceFromScope maps "<aud>/.default" (plus any OpenID Connect scopes,
// which are ignored) to aud.
func audienceFromScope(scope string) (string, *oauthError) {
	var resources []string
	for s := range strings.FieldsSeq(scope) {
		if !oidcScopes[s] {
			resources = append(resources, s)
		}
	}
	if len(resources) != 1 {
		return "", badRequest(errInvalidScope, "want exactly one \"<resource>/.default\" scope, got %q", scope)
	}
	aud, ok := strings.CutSuffix(resources[0], "/.default")
	if !ok || aud == "" {
		return "", badRequest(errInvalidScope, "scope %q: the client_credentials grant takes \"<resource>/.default\"", resources[0])
	}
	return aud, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
