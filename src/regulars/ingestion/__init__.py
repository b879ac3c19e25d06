"""The Segment-compatible HTTP Tracking API: the official Segment and RudderStack SDKs post here."""
