"""Governance: package repository, activity log, staged promotion and traceability."""
