"""Domain-free helpers: clock, ids, pagination. Imports no domain."""
