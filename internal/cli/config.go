package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/cobra"

	"github.com/vmssd/vmssd/api/client"
)

// Defaults of a vmssd installation, used when the config file does not say.
const (
	defaultTenant   = "vmssd"
	defaultAudience = "https://management.vmssd.local/"
	defaultLocation = "local"
	configFileName  = client.ConfigFileName
)

// clientConfig is the file vmssd writes for vmssctl (<data-dir>/vmssctl.json).
type clientConfig = client.Config

// rootOptions are the global flags and the state shared by all commands of
// one invocation.
type rootOptions struct {
	streams IOStreams
	getenv  func(string) string

	configPath   string
	endpoint     string
	caFile       string
	tenant       string
	clientID     string
	clientSecret string
	token        string
	subscription string
	noWait       bool
	debug        bool

	outputOptions // -o, --query (output.go)

	// ran is set once a command's Run started: errors before it are usage
	// errors.
	ran  bool
	conn *connection
}

func (r *rootOptions) addFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&r.configPath, "config", "", "config file (default $VMSSCTL_CONFIG, else $VMSSD_DATA_DIR/vmssctl.json, else ~/.vmssd/vmssctl.json)")
	f.StringVar(&r.endpoint, "endpoint", "", "vmssd ARM endpoint, e.g. https://127.0.0.1:8443")
	f.StringVar(&r.caFile, "ca-file", "", "PEM file of the CA that signed the server certificate")
	f.StringVar(&r.tenant, "tenant", "", "tenant (directory) of the client credential")
	f.StringVar(&r.clientID, "client-id", "", "client id of the service principal")
	f.StringVar(&r.clientSecret, "client-secret", "", "client secret of the service principal (or $VMSSCTL_CLIENT_SECRET)")
	f.StringVar(&r.token, "token", "", "raw bearer token to use instead of a client credential (or $VMSSCTL_TOKEN)")
	f.StringVar(&r.subscription, "subscription", "", "subscription id")
	r.addOutputFlags(f)
	f.BoolVar(&r.noWait, "no-wait", false, "do not wait for long-running operations to finish")
	f.BoolVar(&r.debug, "debug", false, "log HTTP requests to stderr")
}

func (r *rootOptions) validateGlobal() error {
	return r.resolveOutput()
}

// configFile returns the config path and whether it was asked for explicitly.
func (r *rootOptions) configFile() (string, bool) {
	if r.configPath != "" {
		return r.configPath, true
	}
	if p := r.getenv("VMSSCTL_CONFIG"); p != "" {
		return p, true
	}
	if d := r.getenv("VMSSD_DATA_DIR"); d != "" {
		return filepath.Join(d, configFileName), false
	}
	home := r.getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".vmssd", configFileName), false
}

// loadConfig reads the config file and applies the flags over it.
func (r *rootOptions) loadConfig() (clientConfig, error) {
	var cfg clientConfig
	path, explicit := r.configFile()
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	default:
		return cfg, fmt.Errorf("config: %w", err)
	}
	override := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	override(&cfg.Endpoint, r.endpoint)
	override(&cfg.CAFile, r.caFile)
	override(&cfg.Tenant, r.tenant)
	override(&cfg.Subscription, r.subscription)
	if r.clientID != "" && r.clientID != cfg.ClientID {
		// Another principal: the file's secret is not its secret.
		cfg.ClientID, cfg.ClientSecret = r.clientID, ""
	}
	override(&cfg.ClientSecret, r.getenv("VMSSCTL_CLIENT_SECRET"))
	override(&cfg.ClientSecret, r.clientSecret)
	if cfg.Tenant == "" {
		cfg.Tenant = defaultTenant
	}
	if cfg.Audience == "" {
		cfg.Audience = defaultAudience
	}
	if cfg.Location == "" {
		cfg.Location = defaultLocation
	}
	cfg.Endpoint = strings.TrimRight(cfg.Endpoint, "/")
	if cfg.Endpoint == "" {
		return cfg, fmt.Errorf("no endpoint configured: pass --endpoint or a config file (--config, $VMSSCTL_CONFIG; looked for %s)", path)
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return cfg, fmt.Errorf("endpoint %q: an https:// URL is required", cfg.Endpoint)
	}
	return cfg, nil
}

// connection is everything needed to call the server.
type connection struct {
	cfg       clientConfig
	transport *http.Transport
	cred      azcore.TokenCredential
	opts      *arm.ClientOptions
	admin     *arm.Client
}

// connect loads the configuration and builds the credential and pipeline
// options once per invocation.
func (r *rootOptions) connect() (*connection, error) {
	if r.conn != nil {
		return r.conn, nil
	}
	cfg, err := r.loadConfig()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		IdleConnTimeout:       30 * time.Second,
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no PEM certificates", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	hc := &http.Client{Transport: tr}
	co := azcore.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: cfg.Endpoint + "/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: cfg.Endpoint, Audience: cfg.Audience},
			},
		},
		Transport: hc,
		Telemetry: policy.TelemetryOptions{ApplicationID: "vmssctl"},
		Retry:     policy.RetryOptions{MaxRetries: 2},
	}
	if r.debug {
		co.PerRetryPolicies = []policy.Policy{debugPolicy{w: r.streams.ErrOut}}
	}
	var cred azcore.TokenCredential
	token := r.token
	if token == "" {
		token = r.getenv("VMSSCTL_TOKEN")
	}
	switch {
	case token != "":
		cred = staticToken(token)
	case cfg.ClientID != "" && cfg.ClientSecret != "":
		c, err := azidentity.NewClientSecretCredential(cfg.Tenant, cfg.ClientID, cfg.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
		if err != nil {
			return nil, fmt.Errorf("credential: %w", err)
		}
		cred = c
	case cfg.ClientID != "":
		return nil, fmt.Errorf("no client secret for client %q: pass --client-secret or set $VMSSCTL_CLIENT_SECRET", cfg.ClientID)
	default:
		return nil, errors.New("no credentials: pass --token, or --client-id and --client-secret, or use a config file")
	}
	opts := &arm.ClientOptions{ClientOptions: co, DisableRPRegistration: true}
	admin, err := arm.NewClient("vmssctl", "v1.0.0", cred, opts)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	r.conn = &connection{cfg: cfg, transport: tr, cred: cred, opts: opts, admin: admin}
	return r.conn, nil
}

// sub returns the subscription to use.
func (c *connection) sub() (string, error) {
	if c.cfg.Subscription == "" {
		return "", errors.New("no subscription: pass --subscription or set it in the config file")
	}
	return c.cfg.Subscription, nil
}

// close releases idle connections.
func (r *rootOptions) close() {
	if r.conn != nil {
		r.conn.transport.CloseIdleConnections()
	}
}

// staticToken is a raw bearer token.
type staticToken string

func (t staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(t), ExpiresOn: time.Now().Add(time.Hour)}, nil
}
