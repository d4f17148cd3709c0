package model

import (
	"strings"
	"testing"
)

func TestSetUsage(t *testing.T) {
	sizes := map[string]int{"standard_a1": 1, "standard_a2": 2}
	for _, tc := range []struct {
		name     string
		capacity int64
		size     string
		want     Usage
	}{
		{"one core", 3, "Standard_A1", Usage{VCPUs: 3, Instances: 3, ScaleSets: 1}},
		{"case-insensitive size", 3, "STANDARD_A2", Usage{VCPUs: 6, Instances: 3, ScaleSets: 1}},
		{"empty set", 0, "Standard_A2", Usage{ScaleSets: 1}},
		{"size gone from the table", 4, "Standard_Gone", Usage{VCPUs: 4, Instances: 4, ScaleSets: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SetUsage(tc.capacity, tc.size, sizes); got != tc.want {
				t.Errorf("SetUsage(%d, %s) = %+v, want %+v", tc.capacity, tc.size, got, tc.want)
			}
		})
	}
}

func TestQuotaCheck(t *testing.T) {
	q := Quota{VCPUs: 10, Instances: 8, ScaleSets: 2, StorageBytes: 100}
	for _, tc := range []struct {
		name      string
		q         Quota
		cur, next Usage
		want      string // usage name exceeded, "" for none
		msg       string // substring of the message
	}{
		{"within", q, Usage{VCPUs: 2, Instances: 2, ScaleSets: 1}, Usage{VCPUs: 10, Instances: 8, ScaleSets: 2}, "", ""},
		{"cores", q, Usage{VCPUs: 8, Instances: 4, ScaleSets: 1}, Usage{VCPUs: 12, Instances: 6, ScaleSets: 1}, UsageCores,
			"exceeding approved Total Regional Cores quota. Additional details - Deployment Model: Resource Manager, Location: local, Current Limit: 10, Current Usage: 8, Additional Required: 4"},
		{"instances", q, Usage{VCPUs: 1, Instances: 8, ScaleSets: 1}, Usage{VCPUs: 2, Instances: 9, ScaleSets: 1}, UsageVMs, "Virtual Machines quota"},
		{"scale sets", q, Usage{ScaleSets: 2}, Usage{ScaleSets: 3}, UsageScaleSets, "Current Limit: 2, Current Usage: 2, Additional Required: 1"},
		{"storage", q, Usage{StorageBytes: 90}, Usage{StorageBytes: 101}, UsageStorage, "Image Storage"},
		{"scale-in above a lowered limit", q, Usage{VCPUs: 30, Instances: 30, ScaleSets: 1}, Usage{VCPUs: 20, Instances: 20, ScaleSets: 1}, "", ""},
		{"unchanged above a lowered limit", q, Usage{VCPUs: 30, Instances: 30, ScaleSets: 5}, Usage{VCPUs: 30, Instances: 30, ScaleSets: 5}, "", ""},
		{"unlimited", Quota{VCPUs: -1, Instances: -1, ScaleSets: -1}, Usage{}, Usage{VCPUs: 1e6, Instances: 1e6, ScaleSets: 1e3}, "", ""},
		{"zero is the default", Quota{}, Usage{Instances: DefaultQuota.Instances}, Usage{Instances: DefaultQuota.Instances + 1}, UsageVMs, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := tc.q.Check(tc.cur, tc.next)
			switch {
			case tc.want == "" && ex != nil:
				t.Fatalf("Check = %+v, want none", ex)
			case tc.want != "" && ex == nil:
				t.Fatalf("Check = nil, want %s exceeded", tc.want)
			case ex != nil && ex.Name != tc.want:
				t.Fatalf("exceeded %s, want %s", ex.Name, tc.want)
			case ex != nil && !strings.Contains(ex.Message("local"), tc.msg):
				t.Fatalf("message %q does not contain %q", ex.Message("local"), tc.msg)
			}
		})
	}
}

func TestDefaultComputerNamePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"web": "web", "Web": "web", "my_long.scale-set": "mylongsca", "--x": "x", "___": "vm",
		strings.Repeat("a", 64): strings.Repeat("a", MaxComputerNamePrefix),
	} {
		if got := DefaultComputerNamePrefix(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
