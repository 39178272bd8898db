"""Anti-fraud: verdicts and their signals, alerts, blacklist, rate limits (to be built)."""
