"""IMAP4rev1 server for the standby (RFC 3501 and the extensions phones use).

Pure layer (no asyncio, no store, no logging; fuzzable alone, RELIABILITY P15):
- `syntax`: the lexical cursor (atoms, strings, literals, sequence sets, dates);
- `parser`: the incremental `CommandReader`, typed `Command`s, the command table;
- `fetch`, `search`: FETCH items and the SEARCH key AST;
- `mutf7`: modified UTF-7 mailbox names (RFC 3501 §5.1.3);
- `responses`: everything the server writes (strings, flags, dates, codes, lines);
- `rfc822`, `mime`, `bodystructure`: the message structure as Dovecot sees it
  (ENVELOPE, BODY, BODYSTRUCTURE, BODY[section]).

The session and server (I/O, state, store) build on these and are not imported here.
"""
