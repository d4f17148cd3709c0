// Package deploy runs Azure Resource Manager template deployments: the
// persisted deployment record (a state machine: Accepted, Running, then
// Succeeded, Failed or Canceled), the dependency graph built from the
// template's dependsOn and reference() edges, and the executor that applies
// each resource through the API server's own handlers with the identity of
// the caller who started the deployment (see Dispatcher), so validation,
// authorization and long-running operation semantics are those of a direct
// REST call. A deployment left Accepted or Running by a crash is resumed by
// Runner.Run when the server starts: resources already Succeeded are not
// applied again, the others are (PUT is idempotent), and the deployment ends
// Succeeded or Failed, never staying Running.
package deploy

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/vmssd/vmssd/api/arm"
)

// Deployment states (properties.provisioningState).
const (
	StateAccepted  = "Accepted"
	StateRunning   = "Running"
	StateSucceeded = "Succeeded"
	StateFailed    = "Failed"
	StateCanceled  = "Canceled"
)

// Terminal reports whether a deployment or resource state is final.
func Terminal(s string) bool {
	return s == StateSucceeded || s == StateFailed || s == StateCanceled
}

// Prefix is where deployment records live.
const Prefix = "/deployments/"

// subScope stands for "no resource group" in keys of subscription-scope
// deployments (resource group names cannot contain '~').
const subScope = "~"

func lower(s string) string { return strings.ToLower(s) }

// Key is the key of a deployment; rg is "" for subscription scope.
func Key(sub, rg, name string) string { return ScopePrefix(sub, rg) + lower(name) }

// ScopePrefix lists the deployments of a resource group (or of the
// subscription scope when rg is "").
func ScopePrefix(sub, rg string) string {
	if rg == "" {
		rg = subScope
	}
	return Prefix + lower(sub) + "/" + lower(rg) + "/"
}

// MaxHistory bounds the deployments kept per resource group (and per
// subscription scope): Azure keeps 800 and deletes the oldest finished ones
// when a new deployment would exceed it; vmssd does the same.
const MaxHistory = 800

// Identity is who started a deployment: the principal's client id and the
// UID of its record, so that a principal deleted (or re-created with the same
// client id) while its deployment runs does not lend its identity to it.
type Identity struct {
	ClientID string `json:"clientId"`
	UID      string `json:"uid,omitempty"`
}

// Record is a deployment as stored.
type Record struct {
	Sub      string `json:"sub"`
	RG       string `json:"rg,omitempty"` // "" for subscription scope
	Name     string `json:"name"`
	Location string `json:"location,omitempty"`
	// Template is the template as deployed (fetched from templateLink when
	// given that way), kept so a resumed run and exportTemplate see it.
	Template       json.RawMessage `json:"template"`
	TemplateLink   map[string]any  `json:"templateLink,omitempty"`
	Parameters     map[string]any  `json:"parameters,omitempty"` // request form: {"name": {"value": ...}}
	ParametersLink map[string]any  `json:"parametersLink,omitempty"`
	// SecureParameters names the securestring/secureObject parameters: their
	// values are kept for a resumed run but never returned.
	SecureParameters []string          `json:"secureParameters,omitempty"`
	Mode             string            `json:"mode"`
	Tags             map[string]string `json:"tags,omitempty"`

	State         string           `json:"state"`
	CorrelationID string           `json:"correlationId"`
	Created       time.Time        `json:"created"`
	Timestamp     time.Time        `json:"timestamp"` // last change
	End           *time.Time       `json:"end,omitempty"`
	Outputs       map[string]any   `json:"outputs,omitempty"`
	Error         *arm.ErrorDetail `json:"error,omitempty"`
	// Operations are the per-resource operations, in the order they
	// started.
	Operations []Operation `json:"operations,omitempty"`
	// Dependencies and OutputResources are reported by GET.
	Dependencies    []Dependency `json:"dependencies,omitempty"`
	OutputResources []string     `json:"outputResources,omitempty"`

	Identity Identity `json:"identity"`
	// OperationID names the deployment's own long-running operation
	// (operationStatuses/{id}).
	OperationID string `json:"operationId"`
	// CancelRequested is set by POST cancel; the runner ends the deployment
	// Canceled once the resources in flight have finished.
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// Attempt counts the runs (1 for the first, +1 for each resume after a
	// restart).
	Attempt int `json:"attempt,omitempty"`
}

// Dependency is one entry of properties.dependencies.
type Dependency struct {
	ID           string   `json:"id"`
	ResourceType string   `json:"resourceType"`
	ResourceName string   `json:"resourceName"`
	DependsOn    []string `json:"dependsOn,omitempty"`
}

// Operation is one resource's operation within a deployment.
type Operation struct {
	ID            string           `json:"id"`
	ResourceID    string           `json:"resourceId"`
	ResourceType  string           `json:"resourceType"`
	ResourceName  string           `json:"resourceName"`
	State         string           `json:"state"` // Running, Succeeded, Failed, Canceled
	StatusCode    string           `json:"statusCode,omitempty"`
	StatusMessage *arm.ErrorDetail `json:"statusMessage,omitempty"`
	Start         time.Time        `json:"start"`
	End           *time.Time       `json:"end,omitempty"`
	// ProvisioningOperation is Create or Action (nested deployments read
	// as Create too, as in Azure).
	ProvisioningOperation string `json:"provisioningOperation"`
	// Outputs of a nested deployment, for reference() after a resume.
	Outputs map[string]any `json:"outputs,omitempty"`
}

// Finished reports whether r is in a final state.
func (r *Record) Finished() bool { return Terminal(r.State) }

// Op returns the operation of resource id (case-insensitively), or nil.
func (r *Record) Op(resourceID string) *Operation {
	for i := range r.Operations {
		if strings.EqualFold(r.Operations[i].ResourceID, resourceID) {
			return &r.Operations[i]
		}
	}
	return nil
}

// Duration is how long the deployment ran (so far).
func (r *Record) Duration(now time.Time) time.Duration {
	end := now
	if r.End != nil {
		end = *r.End
	}
	return end.Sub(r.Created)
}

// PublicParameters returns the parameters as GET shows them: secure ones
// by type only, as in Azure.
func (r *Record) PublicParameters() map[string]any {
	out := make(map[string]any, len(r.Parameters))
	for k, v := range r.Parameters {
		secure := false
		for _, s := range r.SecureParameters {
			if strings.EqualFold(s, k) {
				secure = true
			}
		}
		if secure {
			out[k] = map[string]any{"type": "SecureString"}
			continue
		}
		out[k] = v
	}
	return out
}
