"""mailstandby: keeps a company's mail flowing while its primary mail system is down."""

__version__ = "0.1.0"
