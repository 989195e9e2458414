package forwarder

import (
	"slices"
	"testing"
)

func TestIDs(t *testing.T) {
	t.Run("ids are given in order and kept across assignments", func(t *testing.T) {
		a := newIDs(8)
		got, _, err := a.assign([]string{"a", "b", "c"})
		if err != nil || got["a"] != 0 || got["b"] != 1 || got["c"] != 2 {
			t.Fatalf("first assignment = %v, %v", got, err)
		}
		got, freed, _ := a.assign([]string{"c", "a", "d"})
		if got["a"] != 0 || got["c"] != 2 || !slices.Equal(freed, []uint32{1}) {
			t.Fatalf("second assignment = %v freed %v; want a=0 c=2, b's 1 freed", got, freed)
		}
		if got["d"] == 1 {
			t.Fatal("the id freed by this assignment went straight to a new key")
		}
	})

	t.Run("a freed id is reused at once only when nothing else is left", func(t *testing.T) {
		a := newIDs(3)
		a.assign([]string{"a", "b", "c"})
		got, freed, err := a.assign([]string{"a", "c", "d"})
		if err != nil || !slices.Equal(freed, []uint32{1}) || got["d"] != 1 {
			t.Fatalf("got %v freed %v err %v; want d to take the only id left, 1", got, freed, err)
		}
	})

	t.Run("more keys than ids is an error and changes nothing", func(t *testing.T) {
		a := newIDs(2)
		a.assign([]string{"a", "b"})
		if _, _, err := a.assign([]string{"a", "b", "c"}); err == nil {
			t.Fatal("three keys fit in two ids")
		}
		got, freed, _ := a.assign([]string{"a", "b"})
		if got["a"] != 0 || got["b"] != 1 || len(freed) != 0 {
			t.Fatalf("after the failed assignment: %v freed %v", got, freed)
		}
	})
}
