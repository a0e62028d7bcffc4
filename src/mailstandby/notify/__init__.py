"""Telling users where their mail is: notifications, forwarding during an outage, phone setup.

- `notifier.Notifier`: `announce(kind, users, occurrence)`, `status()`, background delivery
- `forward.Forwarder`: `plan(user, raw, envelope_sender)` (pure) and `forward(...)` (durable)
- `setup.setup_routes(SetupService)`: personal setup links, profiles, autoconfig
- `templates.Templates`: the Jinja2 templates and their check
- `readiness.report()`: who cannot be reached in an outage
"""
