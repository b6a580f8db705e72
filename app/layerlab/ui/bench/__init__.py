"""The Bench screen: compare splits side by side, apply the fastest."""
