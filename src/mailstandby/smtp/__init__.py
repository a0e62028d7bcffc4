"""The SMTP server (codec, session, server) and the client side towards the primary."""
