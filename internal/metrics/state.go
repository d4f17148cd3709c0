package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/store"
)

// Source is what the scrape-time collectors read besides the store: the
// hosts' observations and the controller's queue (the controller
// implements it).
type Source interface {
	// Observe returns what an instance's host observes.
	Observe(inst *model.Instance) (host.Observed, bool)
	// QueueDepth is the number of scale sets waiting in the work queue.
	QueueDepth() int
}

// Label values of the per-set instance gauges; every one is reported for
// every set (zeros included) so that series do not come and go.
var (
	powerStates = []string{
		string(driver.PowerStarting), string(driver.PowerRunning), string(driver.PowerStopping), string(driver.PowerStopped),
		string(driver.PowerDeallocating), string(driver.PowerDeallocated), string(driver.PowerUnknown),
	}
	healthStates = []string{
		strings.ToLower(string(host.HealthInitializing)), strings.ToLower(string(host.HealthHealthy)),
		strings.ToLower(string(host.HealthUnhealthy)), strings.ToLower(string(host.HealthUnknown)),
	}
	provisioningStates = []string{
		strings.ToLower(model.StateCreating), strings.ToLower(model.StateUpdating), strings.ToLower(model.StateSucceeded),
		strings.ToLower(model.StateFailed), strings.ToLower(model.StateDeleting),
	}
)

var setLabels = []string{"subscription", "resource_group", "scale_set"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, append(slices.Clone(setLabels), labels...), nil)
}

// stateCollector reads the scale sets, their instance records and the
// hosts' observations at scrape time.
type stateCollector struct {
	st      store.Store
	src     Source
	max     int
	timeout time.Duration

	capacity, power, health, prov, latest *prometheus.Desc
	queueDepth, omitted, scaleSets        *prometheus.Desc
	ro                                    rolloutDescs
}

// RegisterState adds the collectors that read the store and src at scrape
// time: instances by power, health and provisioning state per scale set,
// capacity, instances on the latest model, the state and progress of each
// set's latest rolling upgrade, the controller's queue depth.
func (m *Metrics) RegisterState(src Source) {
	m.Registry.MustRegister(&stateCollector{
		st: m.opts.Store, src: src, max: m.opts.MaxScaleSets, timeout: 10 * time.Second,
		capacity: desc("scale_set_capacity", "Instances the scale set's model asks for (sku.capacity)."),
		power: desc("scale_set_instances_by_power_state",
			"Instances of the scale set by power state, as instance views report it (PowerState/...).", "power_state"),
		health: desc("scale_set_instances_by_health_state",
			"Instances of the scale set by application health, as instance views report it (HealthState/...).", "health_state"),
		prov: desc("scale_set_instances_by_provisioning_state",
			"Instances of the scale set by provisioning state.", "provisioning_state"),
		latest: desc("scale_set_instances_latest_model",
			"Instances of the scale set that run the latest model (latestModelApplied)."),
		queueDepth: prometheus.NewDesc(Namespace+"_controller_queue_depth",
			"Scale sets waiting in the controller's work queue.", nil, nil),
		omitted: prometheus.NewDesc(Namespace+"_metrics_scale_sets_omitted",
			"Scale sets left out of the per-set metrics of this scrape (beyond the per-scrape bound).", nil, nil),
		scaleSets: prometheus.NewDesc(Namespace+"_scale_sets",
			"Scale sets in the store.", nil, nil),
		ro: newRolloutDescs(),
	})
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.capacity, c.power, c.health, c.prov, c.latest, c.queueDepth, c.omitted, c.scaleSets} {
		ch <- d
	}
	for _, d := range c.ro.all() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src != nil {
		ch <- prometheus.MustNewConstMetric(c.queueDepth, prometheus.GaugeValue, float64(c.src.QueueDepth()))
	}
	if c.st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	sets, insts, omitted, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.power, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.scaleSets, prometheus.GaugeValue, float64(len(sets)+omitted))
	ch <- prometheus.MustNewConstMetric(c.omitted, prometheus.GaugeValue, float64(omitted))
	for _, set := range sets {
		lv := []string{set.Sub, set.RG, set.Name}
		counts := Count(set, insts[set.Ref().String()], c.observe)
		ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(set.Capacity()), lv...)
		ch <- prometheus.MustNewConstMetric(c.latest, prometheus.GaugeValue, float64(counts.LatestModel), lv...)
		for _, p := range powerStates {
			ch <- prometheus.MustNewConstMetric(c.power, prometheus.GaugeValue, float64(counts.Power[p]), append(lv, p)...)
		}
		for _, h := range healthStates {
			ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue, float64(counts.Health[h]), append(lv, h)...)
		}
		for _, p := range provisioningStates {
			ch <- prometheus.MustNewConstMetric(c.prov, prometheus.GaugeValue, float64(counts.Provisioning[p]), append(lv, p)...)
		}
		c.collectRollout(ctx, ch, set, lv)
	}
}

func (c *stateCollector) observe(inst *model.Instance) (host.Observed, bool) {
	if c.src == nil {
		return host.Observed{}, false
	}
	return c.src.Observe(inst)
}

// read lists the scale sets (at most c.max, in key order) and their
// instance records by set key.
func (c *stateCollector) read(ctx context.Context) ([]*model.ScaleSet, map[string][]*model.Instance, int, error) {
	kvs, _, err := c.st.List(ctx, model.PrefixScaleSets)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("list scale sets: %w", err)
	}
	omitted := 0
	if len(kvs) > c.max {
		omitted = len(kvs) - c.max
		kvs = kvs[:c.max]
	}
	sets := make([]*model.ScaleSet, 0, len(kvs))
	wanted := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		var set model.ScaleSet
		if err := json.Unmarshal(kv.Value, &set); err != nil {
			return nil, nil, 0, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		sets = append(sets, &set)
		wanted[set.Ref().String()] = true
	}
	insts := map[string][]*model.Instance{}
	if len(sets) == 0 {
		return sets, insts, omitted, nil
	}
	ikvs, _, err := c.st.List(ctx, model.PrefixInstances)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("list instances: %w", err)
	}
	for _, kv := range ikvs {
		k := strings.TrimPrefix(string(kv.Key), model.PrefixInstances)
		i := strings.LastIndexByte(k, '/')
		if i < 0 || !wanted[k[:i]] {
			continue
		}
		var inst model.Instance
		if err := json.Unmarshal(kv.Value, &inst); err != nil {
			return nil, nil, 0, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		insts[k[:i]] = append(insts[k[:i]], &inst)
	}
	return sets, insts, omitted, nil
}

// Counts are a scale set's instances by state, with the label values of
// the instance gauges as keys.
type Counts struct {
	Power, Health, Provisioning map[string]int
	LatestModel                 int
}

// Count counts a scale set's instances by power, health and provisioning
// state as the API's instance views report them (PowerState/...,
// HealthState/..., ProvisioningState/..., lower-cased), and those on the
// set's latest model. Unexpected values count as "unknown" (power, health)
// so that labels stay bounded.
func Count(set *model.ScaleSet, insts []*model.Instance, observe func(*model.Instance) (host.Observed, bool)) Counts {
	c := Counts{Power: map[string]int{}, Health: map[string]int{}, Provisioning: map[string]int{}}
	for _, inst := range insts {
		obs, ok := observe(inst)
		c.Power[bounded(PowerState(inst, obs, ok), powerStates, string(driver.PowerUnknown))]++
		h := host.HealthUnknown
		if ok {
			h = obs.Health
		}
		c.Health[bounded(strings.ToLower(string(h)), healthStates, strings.ToLower(string(host.HealthUnknown)))]++
		if p := strings.ToLower(inst.ProvisioningState); slices.Contains(provisioningStates, p) {
			c.Provisioning[p]++
		}
		if inst.ModelVersion == set.ModelVersion {
			c.LatestModel++
		}
	}
	return c
}

func bounded(v string, allowed []string, other string) string {
	if slices.Contains(allowed, v) {
		return v
	}
	return other
}

// PowerState is the instance's power state as the API's instance view
// shows it (the API renders it with this function too): the host's
// observation, else what the records say.
func PowerState(inst *model.Instance, obs host.Observed, ok bool) string {
	switch {
	case ok:
		return string(obs.Power)
	case inst.Deleting:
		return string(driver.PowerStopping)
	case !inst.Placed:
		return string(driver.PowerStarting)
	case inst.Power == model.PowerDeallocated:
		return string(driver.PowerDeallocated)
	}
	return string(driver.PowerUnknown)
}
