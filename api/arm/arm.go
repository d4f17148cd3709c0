// Package arm holds Azure Resource Manager envelope wire types shared by every
// resource provider vmssd serves: the error body, the long-running operation
// status resource, list pages and resource-id helpers. Compute resource bodies
// are the official SDK's models (see package compute).
package arm

import (
	"strings"
	"time"
)

// ErrorResponse is ARM's error envelope: {"error":{...}}.
type ErrorResponse struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the body of an ARM error.
type ErrorDetail struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Target  string        `json:"target,omitempty"`
	Details []ErrorDetail `json:"details,omitempty"`
}

// OperationStatus is the Azure-AsyncOperation status resource.
type OperationStatus struct {
	ID              string       `json:"id,omitempty"`
	Name            string       `json:"name"`
	Status          string       `json:"status"`
	StartTime       time.Time    `json:"startTime"`
	EndTime         *time.Time   `json:"endTime,omitempty"`
	PercentComplete *float64     `json:"percentComplete,omitempty"`
	Error           *ErrorDetail `json:"error,omitempty"`
}

// Operation status values.
const (
	StatusInProgress = "InProgress"
	StatusSucceeded  = "Succeeded"
	StatusFailed     = "Failed"
	StatusCanceled   = "Canceled"
)

// Page is a list page: {"value":[...],"nextLink":"..."}.
type Page[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// ScaleSetID formats the ARM id of a scale set.
func ScaleSetID(sub, rg, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg +
		"/providers/Microsoft.Compute/virtualMachineScaleSets/" + name
}

// InstanceID formats the ARM id of a scale set instance.
func InstanceID(sub, rg, name, instanceID string) string {
	return ScaleSetID(sub, rg, name) + "/virtualMachines/" + instanceID
}

// ResourceGroupID formats the ARM id of a resource group.
func ResourceGroupID(sub, rg string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg
}

// OperationID formats the ARM id of a compute operation status resource.
func OperationID(sub, location, opID string) string {
	return "/subscriptions/" + sub + "/providers/Microsoft.Compute/locations/" +
		strings.ToLower(location) + "/operations/" + opID
}
