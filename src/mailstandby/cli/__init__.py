"""Command-line front ends that are more than a line or two of `__main__`."""
