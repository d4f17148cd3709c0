package apiserver

import (
	"fmt"
	"testing"
)

func TestVMCacheIsBounded(t *testing.T) {
	var c vmCache
	for i := range maxCachedSets + 10 {
		c.put(fmt.Sprintf("set%d", i), map[string]*cachedVM{"k": {}})
	}
	if len(c.sets) != maxCachedSets {
		t.Fatalf("%d sets cached, want %d", len(c.sets), maxCachedSets)
	}
	if c.get("set0") != nil || c.get(fmt.Sprintf("set%d", maxCachedSets+9)) == nil {
		t.Fatal("the least recently listed sets should go first")
	}
	c.put("set20", nil)
	if c.get("set20") != nil {
		t.Fatal("a deleted set's renderings were kept")
	}
}
