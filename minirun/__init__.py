"""minirun: a small, readable, real container runtime. See README.md, "Architecture"."""

__version__ = "0.1.0"
