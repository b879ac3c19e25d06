"""Analytics: the dashboard overview (read-only across every domain)."""
