// Package template is the Azure Resource Manager template language as a pure
// library: no HTTP, no store. It parses a deployment template (JSON, with the
// line and column of every value kept for errors), evaluates template
// expressions ("[concat(...)]") over JSON values (map[string]any, []any,
// string, int64, float64, bool, nil) with every standard function of the
// array, comparison, date, deployment, lambda, logical, numeric, object,
// resource and string groups, checks and coerces parameters as ARM does,
// evaluates variables (with copy), user-defined functions, outputs (with copy),
// and expands resources (nested children, copy loops with serial batches,
// conditions, apiProfile api-versions) into a flat list with their evaluated
// bodies and dependsOn edges.
//
// The caller supplies what only a running system knows through Env:
// resourceGroup(), subscription(), tenant(), deployment(), environment(),
// deployer(), and callbacks for reference(), list*(), providers() and
// pickZones(). Bodies that call reference() or list*() are evaluated only when
// the executor asks (Deployment.EvaluateBody), after their dependencies exist.
//
// Nested deployments keep their inline template unevaluated in the outer
// body; Deployment.PrepareNested prepares it in the inner or outer
// expression scope. CoerceTo converts an evaluated body toward a Go model
// type (the SDK's armcompute structs) the way ARM's JSON handling does, so
// "true" reaches a boolean property as true and "5" an integer one as 5.
//
// uniqueString and guid give Azure's exact values (see hash.go for the
// algorithms and hash_test.go for the known Azure outputs they are checked
// against).
//
// Errors are *Error values carrying ARM's InvalidTemplate code, the JSON path
// of the offending value and, for templates parsed from bytes, its line and
// column; Error.ARM converts them to the service's error vocabulary.
//
// The deployments executor (package deploy) drives it for the deployments
// API and gallery items.
package template
