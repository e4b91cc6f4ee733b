"""Fast Loans development tools: the local stack and the analysts' policy tools; never installed in an image."""
