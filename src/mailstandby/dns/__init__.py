"""The MX switch by RFC 2136 dynamic update."""
