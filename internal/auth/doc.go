// Package auth authenticates vmssd's clients and authorizes their requests.
//
// vmssd plays the part Microsoft Entra ID (or AD FS on Azure Stack Hub) plays
// for Azure: it is the OAuth 2.0 authority that azidentity's
// ClientSecretCredential, the az CLI and Az PowerShell talk to. A service
// principal (client id + secret, kept hashed by the state store behind a
// Source) obtains an ES256-signed JWT access token from the token endpoint
// with the client_credentials grant, and presents it as a bearer token to
// the ARM front end, which checks it with Issuer.Verify.
//
// Endpoints served by Issuer.Handler, for any tenant path segment
// ([A-Za-z0-9.-]+; "adfs" selects AD FS mode in MSAL):
//
//	GET  /{tenant}/v2.0/.well-known/openid-configuration   Entra v2 discovery
//	GET  /{tenant}/.well-known/openid-configuration        v1 and AD FS discovery
//	GET  /adfs/{tenant}/.well-known/openid-configuration   az's tenant resolution under the AD FS authority
//	POST /{tenant}/oauth2/v2.0/token                       v2 token (scope=<aud>/.default)
//	POST /{tenant}/oauth2/token                            v1 and AD FS token (resource=<aud> or scope)
//	GET  /{tenant}/discovery/v2.0/keys, /{tenant}/discovery/keys   JWKS
//
// Clients must be configured with DisableInstanceDiscovery (implied by the
// "adfs" tenant), since instance discovery asks login.microsoftonline.com.
//
// The tenant path segment is accepted but not interpreted: vmssd has one
// directory, whose id is Options.TenantID. Which subscriptions a principal
// may use is decided by its Role and, for tenants, its Subscriptions; see
// Principal.CanAccessSubscription.
package auth
