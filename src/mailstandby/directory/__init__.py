"""Who exists: users, their addresses and aliases, and the domains we serve."""
