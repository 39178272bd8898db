"""Members: identity, points ledger, tiers, redemption, segments (to be built)."""
