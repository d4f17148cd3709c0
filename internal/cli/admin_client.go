package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// api-versions of the operator APIs (Azure Stack admin style).
const (
	apiComputeAdmin       = "2015-12-01-preview"
	apiSubscriptionsAdmin = "2015-11-01"
	apiVMSSDAdmin         = "2015-12-01-preview"
)

// adminCall is one request to an API the SDK has no client for.
type adminCall struct {
	method     string
	path       string // absolute path under the endpoint
	apiVersion string
	query      url.Values
	// body, if set, is sent as JSON; setBody sets any other body.
	body    any
	setBody func(req *policy.Request) error
	// ok are the success status codes.
	ok []int
	// out, if set, receives the decoded JSON response.
	out any
}

// do sends the call through the ARM pipeline (bearer token, retries,
// --debug logging) and maps failures to *azcore.ResponseError.
func (c *connection) do(ctx context.Context, call adminCall) (*http.Response, error) {
	req, err := runtime.NewRequest(ctx, call.method, runtime.JoinPaths(c.admin.Endpoint(), call.path))
	if err != nil {
		return nil, err
	}
	q := req.Raw().URL.Query()
	for k, vs := range call.query {
		q[k] = vs
	}
	q.Set("api-version", call.apiVersion)
	req.Raw().URL.RawQuery = q.Encode()
	req.Raw().Header.Set("Accept", "application/json")
	switch {
	case call.setBody != nil:
		if err := call.setBody(req); err != nil {
			return nil, err
		}
	case call.body != nil:
		if err := runtime.MarshalAsJSON(req, call.body); err != nil {
			return nil, err
		}
	}
	resp, err := c.admin.Pipeline().Do(req)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(call.ok, resp.StatusCode) {
		return nil, runtime.NewResponseError(resp)
	}
	if call.out != nil {
		b, err := runtime.Payload(resp)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, call.out); err != nil {
			return nil, fmt.Errorf("%s %s: decode response: %w", call.method, call.path, err)
		}
	}
	return resp, nil
}

// connectSub connects and returns the subscription the commands work in.
func (r *rootOptions) connectSub() (*connection, string, error) {
	c, err := r.connect()
	if err != nil {
		return nil, "", err
	}
	sub, err := c.sub()
	if err != nil {
		return nil, "", err
	}
	return c, sub, nil
}

// adminPut writes an operator record (200 or 201) and decodes the answer
// into out.
func (c *connection) adminPut(ctx context.Context, path, apiVersion string, in, out any) error {
	_, err := c.do(ctx, adminCall{
		method: http.MethodPut, path: path, apiVersion: apiVersion,
		body: in, ok: []int{http.StatusOK, http.StatusCreated}, out: out,
	})
	return err
}

// adminGet reads an operator record, or a list of them, into out.
func (c *connection) adminGet(ctx context.Context, path, apiVersion string, out any) error {
	_, err := c.do(ctx, adminCall{
		method: http.MethodGet, path: path, apiVersion: apiVersion,
		ok: []int{http.StatusOK}, out: out,
	})
	return err
}

// adminDelete deletes an operator record; like az, deleting nothing (204)
// succeeds.
func (c *connection) adminDelete(ctx context.Context, path, apiVersion string) error {
	_, err := c.do(ctx, adminCall{
		method: http.MethodDelete, path: path, apiVersion: apiVersion,
		ok: []int{http.StatusOK, http.StatusAccepted, http.StatusNoContent},
	})
	return err
}
