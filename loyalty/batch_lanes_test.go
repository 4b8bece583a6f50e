package loyalty

import (
	"fmt"
	"slices"
	"testing"
)

// A batch's lanes: purchases sharing a member or a receipt share a lane in
// the batch's order, every purchase is in exactly one lane, and
// independent members spread evenly.
func TestBatchLanes(t *testing.T) {
	var ins []PurchaseInput
	for i := range 400 {
		in := PurchaseInput{MemberID: fmt.Sprintf("m%d", i%37), StoreID: "s1", ExternalID: fmt.Sprintf("r%d", i)}
		if i%9 == 0 && i >= 100 {
			in.ExternalID = fmt.Sprintf("r%d", i-100) // a receipt of another member, earlier
		}
		ins = append(ins, in)
	}
	lanes := batchLanes(ins, 3)
	if len(lanes) < 2 {
		t.Fatalf("%d lanes", len(lanes))
	}
	laneOf := map[int]int{}
	for l, lane := range lanes {
		if !slices.IsSorted(lane) {
			t.Fatalf("lane %d is out of the batch's order: %v", l, lane)
		}
		for _, i := range lane {
			if _, twice := laneOf[i]; twice {
				t.Fatalf("purchase %d in two lanes", i)
			}
			laneOf[i] = l
		}
	}
	if len(laneOf) != len(ins) {
		t.Fatalf("%d of %d purchases in a lane", len(laneOf), len(ins))
	}
	byMember, byReceipt := map[string]int{}, map[string]int{}
	for i, in := range ins {
		for key, seen := range map[string]map[string]int{in.MemberID: byMember, in.StoreID + "/" + in.ExternalID: byReceipt} {
			if l, ok := seen[key]; ok && l != laneOf[i] {
				t.Fatalf("purchase %d (%s) in lane %d, an earlier one of %s in lane %d", i, key, laneOf[i], key, l)
			}
			seen[key] = laneOf[i]
		}
	}

	// Independent members: even lanes.
	ins = ins[:0]
	for i := range 500 {
		ins = append(ins, PurchaseInput{MemberID: fmt.Sprintf("m%d", i%250), StoreID: "s1", ExternalID: fmt.Sprintf("r%d", i)})
	}
	lanes = batchLanes(ins, 2)
	if len(lanes) != 2 || len(lanes[0]) != 250 || len(lanes[1]) != 250 {
		t.Fatalf("lanes of %d and %d purchases", len(lanes[0]), len(lanes[len(lanes)-1]))
	}
	// One member, or a small batch: one lane.
	for _, in := range [][]PurchaseInput{slices.Repeat([]PurchaseInput{{MemberID: "m"}}, 500), ins[:2*minLane-1]} {
		if got := batchLanes(in, 4); len(got) != 1 || len(got[0]) != len(in) {
			t.Fatalf("%d purchases: %d lanes", len(in), len(got))
		}
	}
}
