"""Campaigns: earn rules, draws and prize pools (to be built)."""
