"""regulars: the open-source customer experience platform."""

__version__ = "0.1.0"
