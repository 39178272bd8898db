"""Yima core: settings, database, tasks, errors, key ring, tenants, users and API keys."""
