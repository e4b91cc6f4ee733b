"""The gateway: the loan application API, the web page, and the outbox relay."""
