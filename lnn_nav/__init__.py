"""lnn-nav: drone navigation with liquid time-constant neural circuit policies."""

__version__ = "0.1.0"
