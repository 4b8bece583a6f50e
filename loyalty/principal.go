package loyalty

import "context"

// Role is what a token's holder may do.
type Role string

// The roles of §2 of the contract.
const (
	RoleAdmin    Role = "admin"
	RoleMarketer Role = "marketer"
	RolePOS      Role = "pos"
	RoleMember   Role = "member"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleMarketer, RolePOS, RoleMember:
		return true
	}
	return false
}

// Principal is the verified caller.
type Principal struct {
	Subject string // the token's sub: an operator, a till, or a member id
	Role    Role
	StoreID string // for a POS: the only store it may post for, when set
}

// Is reports whether the caller holds one of roles.
func (p Principal) Is(roles ...Role) bool {
	for _, r := range roles {
		if p.Role == r {
			return true
		}
	}
	return false
}

// SeesMember reports whether the caller may see member id. A member sees only
// itself; others are hidden as if they did not exist.
func (p Principal) SeesMember(id string) bool {
	return p.Role != RoleMember || p.Subject == id
}

type principalKey struct{}

// WithPrincipal stores the caller in ctx.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller stored in ctx; a context without one is
// unauthorized.
func PrincipalFrom(ctx context.Context) (Principal, error) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	if !ok || p.Subject == "" {
		return Principal{}, Errorf(Unauthorized, "unauthorized", "authentication required")
	}
	return p, nil
}
