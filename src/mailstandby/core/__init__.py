"""The pure core: value types shared by every component. Imports only the standard library."""
