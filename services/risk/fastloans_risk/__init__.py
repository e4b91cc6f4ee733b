"""Risk assessment: scores submitted applications with the active credit policy."""
