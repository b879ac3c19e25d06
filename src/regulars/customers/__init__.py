"""Customers: one profile, one timeline, facts, consents and groups per person."""
