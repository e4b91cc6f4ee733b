"""Approval: decides scored applications (approve, reject, refer) by the policy's decision rules."""
