package jobs

// ChurnMembersSQL is the one pass over every member's purchases that
// member_activity keeps up to date: the reference its tests compare with.
var ChurnMembersSQL = churnMembers
