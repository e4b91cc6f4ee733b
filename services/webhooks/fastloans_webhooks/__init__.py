"""Fast Loans webhooks dispatcher."""
