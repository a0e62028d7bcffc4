"""Event sink for the primary MTA (Sendmail milter protocol): journal copies and takeover during an outage."""
