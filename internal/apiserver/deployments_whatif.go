package apiserver

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/vmssd/vmssd/internal/deploy"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/template"
)

// whatIfDeployment answers POST whatIf: for each resource the template
// deploys, whether it would be created, modified (with the property-level
// changes) or left unchanged. The current state is read through the API as
// the caller. Resources whose bodies need reference() are reported
// "Deploy": their values are known only while deploying.
func (s *Server) whatIfDeployment(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	req, err := readDeploymentBody(r)
	if err != nil {
		return err
	}
	rec, d, err := s.buildRecord(r, rc, req)
	if err != nil {
		return err
	}
	var changes []any
	var walk func(d *template.Deployment) error
	walk = func(d *template.Deployment) error {
		for _, res := range d.Resources {
			if !res.Condition || res.Existing {
				continue
			}
			if strings.EqualFold(res.Type, deploy.TypeDeployments) {
				if res.Body == nil {
					continue
				}
				env, err := s.templateEnv(ctx, rec)
				if err != nil {
					return err
				}
				nd, err := d.PrepareNested(ctx, res.Body, env)
				if err != nil {
					return template.ToARM(err)
				}
				if err := walk(nd); err != nil {
					return err
				}
				continue
			}
			ch := map[string]any{"resourceId": res.ID}
			if strings.EqualFold(res.Type, deploy.TypeScaleSetExtensions) {
				// Part of its scale set's model: no resource to compare.
				ch["changeType"] = deploy.ChangeDeploy
				changes = append(changes, ch)
				continue
			}
			// reference() is answered from the resources as they are now:
			// one that does not exist yet leaves the result unknown.
			after, err := d.EvaluateBody(ctx, res)
			if err != nil {
				ch["changeType"] = deploy.ChangeDeploy
				changes = append(changes, ch)
				continue
			}
			after = coerceBody(res.Type, after)
			resp, err := s.Do(ctx, rec.Identity, http.MethodGet, res.ID+"?api-version="+url.QueryEscape(res.APIVersion), nil)
			if err != nil {
				return err
			}
			switch {
			case resp.Status == http.StatusNotFound:
				ch["changeType"] = deploy.ChangeCreate
				ch["after"] = after
			case resp.Status >= 400:
				var er struct {
					Error struct{ Code, Message string }
				}
				_ = json.Unmarshal(resp.Body, &er)
				return errs.New(errs.Invalid, "InvalidTemplateDeployment", "What-if could not read '%s': %s %s", res.ID, er.Error.Code, er.Error.Message)
			default:
				var before map[string]any
				_ = json.Unmarshal(resp.Body, &before)
				delta := deploy.Diff(before, after)
				ch["before"] = before
				ch["after"] = after
				if len(delta) == 0 {
					ch["changeType"] = deploy.ChangeNoChange
				} else {
					ch["changeType"] = deploy.ChangeModify
					ch["delta"] = delta
				}
			}
			changes = append(changes, ch)
		}
		return nil
	}
	if err := walk(d); err != nil {
		return err
	}
	if changes == nil {
		changes = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "Succeeded", "properties": map[string]any{"changes": changes}})
	return nil
}
