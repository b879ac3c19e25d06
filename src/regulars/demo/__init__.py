"""The demo store: a deterministic generator of Segment messages and its loader."""
