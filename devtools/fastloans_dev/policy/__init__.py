"""The analysts' policy tools: `fastloans policy ...`, what-if replay and its charts (the policy: fastloans.policy)."""
